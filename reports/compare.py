"""compare.md and compare.html: several implementations' reports side by side.

Rows are areas × world sizes, columns implementations. A report that has no
result for an area at a world size shows "—" (missing), never 0%.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .loading import load_report  # validates: the schema, then the fields
from .model import Cell, ReportError, ReportView
from .markdown import MISSING, cell_text, md_code, md_text

_Key = tuple[str, int, str]


def _table_code(value: object) -> str:
    """A code span inside a table cell, where GFM needs pipes escaped even in code."""
    return md_code(value).replace("|", "\\|")


@dataclass
class ComparedRun:
    label: str
    path: Path
    view: ReportView


def _labels(views: Sequence[ReportView], paths: Sequence[Path]) -> list[str]:
    """Implementation names, made unique by the report's path, then its position."""
    # Gloo on the CPU goes without saying; other placements (nccl/cuda) are named.
    labels = [f"{v.implementation_label} ({v.placement_label})" if v.placement_label not in ("", "gloo/cpu")
              else v.implementation_label for v in views]
    counts = Counter(labels)
    labels = [f"{label} ({p.parent.name}/{p.name})" if counts[label] > 1 else label
              for label, p in zip(labels, paths)]
    counts = Counter(labels)
    return [f"{label} #{i + 1}" if counts[label] > 1 else label for i, label in enumerate(labels)]


class Comparison:
    def __init__(self, runs: list[ComparedRun]) -> None:
        if not runs:
            raise ReportError("compare needs at least one report.json")
        self.runs = runs
        self.areas = sorted({a for run in runs for a in run.view.areas})
        self.world_sizes = sorted({ws for run in runs for ws in run.view.world_sizes})
        self.suite_versions = sorted({run.view.suite_label for run in runs})

    def cell(self, run: ComparedRun, area: str, world_size: int) -> Optional[Cell]:
        return run.view.cell(area, world_size)

    def world_size_total(self, run: ComparedRun, world_size: int) -> Optional[Cell]:
        total = run.view.world_size_totals.get(world_size)
        return total if total is not None and total.total else None

    def differences(self) -> list[tuple[str, list[Optional[str]]]]:
        """(result name, outcome per run or None when not run) where the runs disagree."""
        outcomes: dict[_Key, list[Optional[str]]] = {}
        for i, run in enumerate(self.runs):
            for r in run.view.results:
                key = (r["case"], r["world_size"], str(r.get("backend") or ""))
                outcomes.setdefault(key, [None] * len(self.runs))[i] = r["outcome"]
        multi_backend = len({key[2] for key in outcomes}) > 1
        rows = []
        for (case, ws, backend), per_run in sorted(outcomes.items()):
            if len(set(per_run)) > 1:
                name = f"{case}@ws{ws}" + (f"[{backend}]" if multi_backend else "")
                rows.append((name, per_run))
        return rows


def build_comparison(report_paths: Sequence[Path]) -> Comparison:
    paths = [Path(p) for p in report_paths]
    views = [ReportView(load_report(p), source=str(p)) for p in paths]
    labels = _labels(views, paths)
    return Comparison([ComparedRun(label, path, view)
                       for label, path, view in zip(labels, paths, views)])


def render_compare_markdown(comparison: Comparison) -> str:
    runs = comparison.runs
    lines = ["# Conformance comparison", ""]
    if len(comparison.suite_versions) > 1:
        lines += [f"> **Different suite versions** ({md_text(', '.join(comparison.suite_versions))}):"
                  " the same case may test different things; compare with care.", ""]
    partial = [run.label for run in runs if run.view.partial]
    if partial:
        lines += [f"> **Partial runs**: {md_text(', '.join(partial))}. What they did not run shows"
                  f" as {MISSING}.", ""]
    lines += ["## Implementations", ""]
    header = [""] + [md_text(run.label) for run in runs]
    facts = [
        ("Score", [f"**{run.view.score.headline}**" for run in runs]),
        ("Rule coverage", [run.view.score.coverage for run in runs]),
        ("Suite", [md_text(run.view.suite_label) for run in runs]),
        ("Build", [md_text(run.view.build_label) for run in runs]),
        ("Host", [md_text(run.view.host_label) for run in runs]),
        ("World sizes", [", ".join(map(str, run.view.requested_world_sizes)) or MISSING
                         for run in runs]),
        ("Partial", ["yes" if run.view.partial else "no" for run in runs]),
        ("Report", [_table_code(run.path) for run in runs]),
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([name] + values) + " |" for name, values in facts]
    lines += ["", "## Results by area, world size and implementation", ""]
    header = ["Area", "World size"] + [md_text(run.label) for run in runs]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for area in comparison.areas:
        for ws in comparison.world_sizes:
            cells = [cell_text(comparison.cell(run, area, ws)) for run in runs]
            lines.append("| " + " | ".join([md_text(area), str(ws)] + cells) + " |")
    for ws in comparison.world_sizes:
        cells = [cell_text(comparison.world_size_total(run, ws)) for run in runs]
        lines.append("| " + " | ".join(["**All**", str(ws)] + cells) + " |")
    lines += ["", f"Each cell: passed/total results, other outcomes in brackets; {MISSING} = not run.",
              ""]
    differences = comparison.differences()
    lines += [f"## Differences ({len(differences)})", ""]
    if differences:
        header = ["Case"] + [md_text(run.label) for run in runs]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, outcomes in differences:
            lines.append("| " + " | ".join([_table_code(name)] + [o or MISSING for o in outcomes]) + " |")
    else:
        lines.append("None: every result has the same outcome in every report.")
    return "\n".join(lines).rstrip() + "\n"


def render_compare_html(comparison: Comparison) -> str:
    from .html import environment

    template = environment().get_template("compare.html.j2")
    return template.render(comparison=comparison, MISSING=MISSING)


def write_compare(report_paths: Sequence[Path], out_dir: Path) -> list[Path]:
    comparison = build_comparison(report_paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, html_path = out_dir / "compare.md", out_dir / "compare.html"
    markdown_path.write_text(render_compare_markdown(comparison), encoding="utf-8")
    html_path.write_text(render_compare_html(comparison), encoding="utf-8")
    return [markdown_path, html_path]
