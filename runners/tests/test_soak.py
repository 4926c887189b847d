"""./ccts soak (runners/soak.py): a clean soak exits 0 with nothing counted; a
mutant's failing case, and a process a rank left behind out of the runner's
reach, are counted and make it exit 1. Needs the built reference adapter."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from runners.execute import default_adapter
from runners.tests.support import ROOT

ADAPTER = os.environ.get("CCTS_ADAPTER") or default_adapter()


def soak(out: Path, *args: str, env: dict | None = None) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "runners", "soak", "--out", str(out), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))
    return done.returncode, json.loads((out / "soak.json").read_text())


@unittest.skipUnless(Path(ADAPTER).exists(), f"the reference adapter is not built ({ADAPTER})")
class Soak(unittest.TestCase):
    def setUp(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="ccts-soak-"))

    def test_a_clean_soak_counts_nothing(self) -> None:
        code, tally = soak(self.work / "clean", "--runs", "2", "--adapter", ADAPTER,
                           "-k", "replicate.parity.single_module", "-k", "contract.fqn.*", "--world-sizes", "1,2")
        summary = tally["summary"]
        self.assertEqual(code, 0, summary)
        self.assertEqual(summary["runs"], 2)
        self.assertEqual(summary["results_per_run"][0], summary["results_per_run"][1])
        self.assertGreater(summary["results_per_run"][0], 4)
        self.assertEqual((summary["non_pass"], summary["unstable"], summary["lost"], summary["orphans"]),
                         ({}, {}, 0, 0))
        self.assertEqual([r["seed"] for r in tally["runs"]], [1, 2])

    def test_a_failing_case_is_counted_in_every_run(self) -> None:
        code, tally = soak(self.work / "mutant", "--runs", "2", "--adapter", ADAPTER,
                           "-k", "replicate.parity.single_module", "--world-sizes", "2",
                           env={"CCTS_MUTANT": "grad_sum"})
        self.assertEqual(code, 1)
        self.assertEqual(tally["summary"]["non_pass"], {"replicate.parity.single_module@2": {"fail": 2}})

    def test_a_process_left_out_of_the_runners_reach_is_an_orphan(self) -> None:
        # A rank that starts a process without the session mark, in its own
        # session: the runner cannot find it; soak's own mark still can.
        leaver = ("sh -c 'env -u CCTS_SESSION setsid sleep 120 </dev/null >/dev/null 2>&1 & "
                  f"exec {ADAPTER}'")
        code, tally = soak(self.work / "orphan", "--runs", "1", "--adapter", leaver,
                           "-k", "contract.fqn.wrapper_rejected", "--world-sizes", "1")
        pids = tally["runs"][0]["orphans"]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.assertEqual(code, 1)
        self.assertEqual(len(pids), 1, tally["summary"])
        self.assertEqual(tally["summary"]["non_pass"], {})

    def test_its_own_options_are_refused_among_run_options(self) -> None:
        done = subprocess.run([sys.executable, "-m", "runners", "soak", "--runs", "1", "--seed", "3"], cwd=ROOT,
                              capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.assertEqual(done.returncode, 2)
        self.assertIn("--seed is soak's to set", done.stderr)


if __name__ == "__main__":
    unittest.main()
