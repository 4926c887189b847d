"""Seed corpus for the adapter's fuzz target: one file per conformance case,
holding what the runner writes to rank 0 of a one-rank session (hello, the
case's run message, bye), so that libFuzzer mutates real messages.

    python reference/tests/fuzz/seeds.py OUT_DIR      (PYTHONPATH: the checkout)
"""
import json
import sys
from pathlib import Path

from runners.session import JUDGE_FIELDS
from runners.suite import Suite, SuiteError, resolved_fixtures


def messages(case, suite: Suite) -> list[dict]:
    run = {"type": "run", "case": {k: v for k, v in case.data.items() if k not in JUDGE_FIELDS},
           "fixtures": resolved_fixtures(case, suite), "world_size": 1, "rank": 0,
           "backend": "gloo", "device": "cpu"}
    return [{"type": "hello", "protocol": 2, "backend": "gloo", "device": "cpu"}, run, {"type": "bye"}]


def main(out: Path) -> int:
    suite = Suite()
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for case in suite.load_cases():
        try:
            lines = messages(case, suite)
        except SuiteError as e:  # validate reports it; a seed less here
            print(f"seeds.py: {e}", file=sys.stderr)
            continue
        (out / f"{case.id}.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
        written += 1
    print(f"seeds.py: {written} seeds in {out}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
