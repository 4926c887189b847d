"""report.md: the summary a pull request shows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from .model import Cell, ReportView
from .text import (check_label, error_line, failed_ranks, rank_label, sorted_failures,
                   visible_text)
from .values import compact_json

MISSING = "—"
# Values in a Markdown line stay short; the HTML report has the full diff.
VALUE_LIMIT = 240

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md_text(value: Any) -> str:
    """Plain text safe in Markdown prose and table cells (one line, no markup, no HTML)."""
    text = " ".join(visible_text(value).split())
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(value: Any) -> str:
    """An inline code span holding `value` verbatim (on one line)."""
    text = " ".join(visible_text(value).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`") or longest:
        return f"{fence} {text} {fence}"
    return f"{fence}{text}{fence}"


def cell_text(cell: Optional[Cell]) -> str:
    return MISSING if cell is None else md_text(cell.summary())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _headline(view: ReportView) -> list[str]:
    report = view.report
    lines = [f"# Conformance report: {md_text(view.implementation_label)}", ""]
    if view.partial:
        lines += ["> **Partial run.** Only part of the suite ran (a selection, or the run was "
                  "interrupted); cases and rules that did not run are not counted as passing "
                  "and this score is not comparable with a full run.", ""]
    lines += [f"**Score: {view.score.headline}** ({view.score.coverage})", ""]
    facts = [
        ("Suite", view.suite_label),
        ("Implementation", view.implementation_label),
        ("Build", view.build_label),
        ("Host", view.host_label),
        ("World sizes", ", ".join(str(ws) for ws in view.requested_world_sizes) or MISSING),
        ("Results", f"{view.total.total} ({view.total.others() or 'all passed'})"),
    ]
    if report.get("started"):
        facts.append(("Started", str(report["started"])))
    if isinstance(report.get("duration_s"), (int, float)):
        facts.append(("Duration", f"{report['duration_s']:.1f} s"))
    lines += [f"- {name}: {md_text(value)}" for name, value in facts]
    if report.get("command"):
        lines.append(f"- Command: {md_code(report['command'])}")
    return lines + [""]


def _scoreboard(view: ReportView) -> list[str]:
    lines = ["## Results by area and world size", ""]
    if not view.results:
        return lines + ["No case ran.", ""]
    header = ["Area"] + [f"ws {ws}" for ws in view.world_sizes] + ["All"]
    rows = [[md_text(area)] + [cell_text(view.cell(area, ws)) for ws in view.world_sizes]
            + [cell_text(view.area_totals[area])] for area in view.areas]
    rows.append(["**All**"] + [cell_text(view.world_size_totals[ws])
                               if view.world_size_totals[ws].total else MISSING
                               for ws in view.world_sizes] + [cell_text(view.total)])
    lines += _table(header, rows)
    return lines + ["", f"Each cell: passed/total results, other outcomes in brackets; "
                        f"{MISSING} = not run.", ""]


def _result_title(view: ReportView, result: dict) -> str:
    title = f"{md_code(view.result_name(result))} **{result['outcome']}**"
    if result.get("message"):
        title += f": {md_text(result['message'])}"
    return title


def _result_details(result: dict) -> list[str]:
    lines = []
    for failure in sorted_failures(result):
        line = f"  - {rank_label(failure.get('rank'))}, {md_code(check_label(failure))}"
        if failure.get("message"):
            line += f": {md_text(failure['message'])}"
        if "expected" in failure or "observed" in failure:
            line += (f" — expected {md_code(compact_json(failure.get('expected'), VALUE_LIMIT))},"
                     f" observed {md_code(compact_json(failure.get('observed'), VALUE_LIMIT))}")
        lines.append(line)
    for rank in failed_ranks(result):
        line = f"  - rank {rank.get('rank')}: {md_text(rank.get('outcome'))}"
        if rank.get("error"):
            line += f" — {md_text(error_line(rank['error']))}"
        lines.append(line)
    if result.get("requirements"):
        lines.append(f"  - rules: {', '.join(md_code(r) for r in result['requirements'])}")
    if result.get("file"):
        lines.append(f"  - case: {md_code(result['file'])}")
    if result.get("rerun"):
        lines.append(f"  - rerun: {md_code(result['rerun'])}")
    return lines


def _failures(view: ReportView) -> list[str]:
    failing = view.failing
    lines = [f"## Failures ({len(failing)})", ""]
    if not failing:
        return lines + ["None.", ""]
    for result in failing:
        lines.append(f"- {_result_title(view, result)}")
        lines += _result_details(result)
    return lines + [""]


def _expectations(view: ReportView) -> list[str]:
    results = view.expectation_results
    if not results:
        return []
    lines = [f"## Expected failures ({len(results)})", ""]
    for result in results:
        reason = result.get("xfail_reason") or "no reason given"
        note = ("unexpected pass: remove it from the expected-failures file"
                if result["outcome"] == "xpass" else "still failing")
        lines.append(f"- {md_code(view.result_name(result))} **{result['outcome']}** "
                     f"({md_text(note)}); reason: {md_text(reason)}")
        if result["outcome"] == "xfail":
            lines += _result_details(result)
    return lines + [""]


def _not_run(view: ReportView) -> list[str]:
    lines = []
    for outcome, heading in (("unsupported", "Unsupported"), ("skip", "Skipped")):
        results = view.results_with([outcome])
        if not results:
            continue
        counts = ", ".join(f"{md_text(a)} {n}" for a, n in view.not_run_counts(outcome))
        lines += [f"## {heading} ({len(results)})", "", f"By area: {counts}.", ""]
        lines += [f"- {md_code(view.result_name(r))}"
                  f"{': ' + md_text(r['message']) if r.get('message') else ''}" for r in results]
        lines.append("")
    return lines


def _uncovered(view: ReportView) -> list[str]:
    uncovered = [c for c in view.uncovered_rules if c.declared]
    undeclared = [c for c in view.rule_coverage.values() if not c.declared]
    heading = "Rules with no case in this run" if view.partial else "Rules with no case"
    lines = [f"## {heading} ({len(uncovered)})", ""]
    if not uncovered:
        lines.append("None: every rule is tested by at least one case.")
    for rule in uncovered:
        where = f" ({md_text(rule.file)})" if rule.file else ""
        lines.append(f"- **{md_text(rule.id)}** {md_text(rule.text)}{where}")
    lines.append("")
    if undeclared:
        lines += [f"## Rule ids no spec declares ({len(undeclared)})", ""]
        lines += [f"- {md_code(c.id)}, listed by {', '.join(md_code(n) for n in c.cases)}"
                  for c in undeclared]
        lines.append("")
    return lines


def render_markdown(view: ReportView) -> str:
    lines = (_headline(view) + _scoreboard(view) + _failures(view) + _expectations(view)
             + _not_run(view) + _uncovered(view))
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(view: ReportView, path: Path) -> Path:
    path.write_text(render_markdown(view), encoding="utf-8")
    return path
