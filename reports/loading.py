"""Reading and validating report.json: the schema first, then the fields the writers
rely on. Its own module, so that the writers (compare.py) and the package entry
(__init__.py) both use it without importing each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .model import check_report, load_report_file
from .schema import validate_against_schema


def validate_report(report: Any, source: str, schema_path: Optional[Path] = None) -> None:
    """Raises ReportError naming `source` and the field when `report` cannot be rendered.

    Checks against spec/schema/report.schema.json (or `schema_path`) when that
    file exists, then the fields the writers rely on.
    """
    validate_against_schema(report, source, schema_path)
    check_report(report, source)


def load_report(path: Path, schema_path: Optional[Path] = None) -> dict:
    """Reads and validates one report.json."""
    report = load_report_file(Path(path))
    validate_report(report, str(path), schema_path)
    return report
