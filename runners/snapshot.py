"""`snapshot`: the committed conformance results (reports/snapshot/).

`./ccts snapshot NAME [run options]` runs the suite like `run` (its output in
out/snapshot/NAME/), then copies the run's report.json to
reports/snapshot/NAME.json and rewrites reports/snapshot/SUMMARY.md, the
side-by-side comparison of every committed report. `./ccts compare` with no
reports renders the same comparison as HTML. A partial run (interrupted, or
one whose rank groups never started) is not committed."""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from . import execute
from .suite import ROOT, Suite, SuiteError

SNAPSHOT_DIR = ROOT / "reports" / "snapshot"
SUMMARY = "SUMMARY.md"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def run_folder(name: str) -> Path:
    """Where the run's own reports go (generated output, not committed)."""
    return ROOT / "out" / "snapshot" / name


def snapshot_reports(folder: Path = SNAPSHOT_DIR) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def summary_text(folder: Path) -> str:
    from reports.compare import build_comparison, render_compare_markdown

    text = render_compare_markdown(build_comparison(snapshot_reports(folder)))
    # Paths relative to the snapshot folder: the summary reads the same on every machine.
    return text.replace(str(folder.resolve()) + "/", "").replace(str(folder) + "/", "")


def write_summary(folder: Path) -> Path:
    summary = folder / SUMMARY
    summary.write_text(summary_text(folder), encoding="utf-8")
    return summary


def main(args: argparse.Namespace, options: execute.RunOptions, suite: Suite) -> int:
    if not NAME.match(args.name) or args.name.endswith(".json"):
        print(f"error: snapshot name '{args.name}' must be letters, digits, '.', '_' or '-' "
              "(no .json: it is added)", file=sys.stderr)
        return 2
    try:
        code = execute.run(suite, options)
    except SuiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report_path = options.out / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if report.get("partial") or not report.get("implementation", {}).get("name"):
        print(f"error: the run did not complete; {args.snapshot_dir} is unchanged", file=sys.stderr)
        return 2
    folder = Path(args.snapshot_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{args.name}.json"
    shutil.copyfile(report_path, target)
    summary = write_summary(folder)
    print(f"snapshot: {target}  summary: {summary}")
    return code
