"""Report writers: report.json ("ccts-report/1") -> JUnit XML, Markdown, HTML, comparison.

report.json is the source of every other format. The runner calls
`write_all` after a run and `render_compare` for `ccts compare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .loading import load_report, validate_report
from .model import REPORT_FORMAT, ReportError, ReportView
from .schema import REPORT_SCHEMA

__all__ = [
    "REPORT_FORMAT", "REPORT_SCHEMA", "ReportError", "ReportView", "load_report", "validate_report",
    "write_all", "render_compare",
]


def write_all(report: dict, out_dir: Path) -> list[Path]:
    """Writes junit.xml, report.md and index.html into out_dir; returns their paths."""
    from .html import write_html
    from .junit import write_junit
    from .markdown import write_markdown

    out_dir = Path(out_dir)
    source = str(out_dir / "report.json")
    validate_report(report, source)
    view = ReportView(report, source)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_junit(view, out_dir / "junit.xml"),
        write_markdown(view, out_dir / "report.md"),
        write_html(view, out_dir / "index.html"),
    ]


def render_compare(report_paths: Sequence[Path], out_dir: Path) -> list[Path]:
    """Writes compare.md and compare.html for several report.json files; returns their paths."""
    from .compare import write_compare

    return write_compare(report_paths, out_dir)
