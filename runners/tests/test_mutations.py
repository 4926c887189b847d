"""Every conformance case fails against a wrong implementation: the real
suite runs on the reference adapter behind mutating_adapter.py, once per
mutation, and each case must fail under at least one of them (and pass with
none). Needs the built adapter (CCTS_ADAPTER or build/)."""
import os
import sys
import tempfile
import unittest
from pathlib import Path

from runners.execute import default_adapter
from runners.tests import mutating_adapter
from runners.tests.support import ROOT

import json
import subprocess

ADAPTER = os.environ.get("CCTS_ADAPTER") or default_adapter()
PROXY = Path(__file__).with_name("mutating_adapter.py")


def run_suite(adapter: str, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "runners", "run", "--adapter", adapter, "--world-sizes", "1,2",
                    "--out", str(out), "-q"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                   capture_output=True, text=True, timeout=600)
    return json.loads((out / "report.json").read_text())


@unittest.skipUnless(Path(ADAPTER).exists(), f"the reference adapter is not built ({ADAPTER})")
class EveryCaseCanFail(unittest.TestCase):
    def test_each_case_fails_under_some_mutation(self) -> None:
        work = Path(tempfile.mkdtemp(prefix="ccts-mutations-"))
        clean = run_suite(ADAPTER, work / "clean")
        self.assertLessEqual({r["outcome"] for r in clean["results"]}, {"pass", "unsupported"},
                             "the suite must pass unmutated")
        # Cases the reference cannot run say nothing about their own strength here.
        caught: dict[str, list[str]] = {r["case"]: [] for r in clean["results"] if r["outcome"] == "pass"}
        for mutation in mutating_adapter.MUTATIONS:
            command = f"{sys.executable} {PROXY} {mutation} -- {ADAPTER}"
            report = run_suite(command, work / mutation)
            for r in report["results"]:
                if r["outcome"] == "fail" and r["case"] in caught:
                    caught[r["case"]].append(mutation)
        blind = sorted(case for case, mutations in caught.items() if not mutations)
        self.assertEqual(blind, [], "cases that no wrong implementation fails")


if __name__ == "__main__":
    unittest.main()
