"""python3 -m reports: render reports from report.json files without running anything.

  python3 -m reports render out/report.json [--out DIR]      junit.xml, report.md, index.html
  python3 -m reports compare a/report.json b/report.json --out DIR   compare.md, compare.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import ReportError, load_report, render_compare, write_all


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m reports", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    render = verbs.add_parser("render", help="write junit.xml, report.md and index.html")
    render.add_argument("report", type=Path, help="a report.json")
    render.add_argument("--out", type=Path, help="output folder (default: the report's folder)")
    compare = verbs.add_parser("compare", help="write compare.md and compare.html")
    compare.add_argument("reports", type=Path, nargs="+", help="report.json files, one per run")
    compare.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    try:
        if args.verb == "render":
            paths = write_all(load_report(args.report), args.out or args.report.parent)
        else:
            paths = render_compare(args.reports, args.out)
    except ReportError as err:
        print(f"reports: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
