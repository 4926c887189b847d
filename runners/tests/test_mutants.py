"""Realistic bugs in the reference (reference/include/ccts/mutants.h) are
caught: with CCTS_MUTANT set, the named cases must fail and the rest of the
area keeps passing. Needs the built adapter (CCTS_ADAPTER or build/)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from runners.execute import default_adapter
from runners.tests.support import ROOT

ADAPTER = os.environ.get("CCTS_ADAPTER") or default_adapter()

# mutant -> (area, cases that must fail)
MUTANTS = {
    "no_fqn_check": ("contract", {"contract.fqn.wrapper_rejected", "contract.fqn.added_parameter_rejected",
                                  "contract.fqn.added_buffer_rejected", "contract.fqn.added_module_rejected",
                                  "contract.fqn.reordered_rejected"}),
    "state_not_shared": ("contract", {"contract.state.shared_per_call", "contract.state.roots_only"}),
    "no_once_check": ("contract", {"contract.registry.order_and_reapply", "contract.once.list_reapply_message",
                                   "contract.once.partial_list_keeps_earlier"}),
    "parents_not_reset": ("mod_tracker", {"mod_tracker.backward.reset_clears_unfinished_modules"}),
    "pre_fw_before_append": ("mod_tracker", {"mod_tracker.hooks.user_hooks_order",
                                             "mod_tracker.ac.recompute_inside_backward"}),
}


@unittest.skipUnless(Path(ADAPTER).exists(), f"the reference adapter is not built ({ADAPTER})")
class Mutants(unittest.TestCase):
    def test_each_mutant_is_caught_by_its_cases(self) -> None:
        work = Path(tempfile.mkdtemp(prefix="ccts-mutants-"))
        for mutant, (area, must_fail) in MUTANTS.items():
            with self.subTest(mutant=mutant):
                out = work / mutant
                subprocess.run([sys.executable, "-m", "runners", "run", "--adapter", ADAPTER, "--area", area,
                                "--world-sizes", "1", "--out", str(out), "-q"], cwd=ROOT, capture_output=True,
                               env=dict(os.environ, PYTHONPATH=str(ROOT), CCTS_MUTANT=mutant), timeout=300)
                report = json.loads((out / "report.json").read_text())
                failed = {r["case"] for r in report["results"] if r["outcome"] == "fail"}
                self.assertLessEqual(must_fail, failed, f"{mutant}: cases that did not catch it")


if __name__ == "__main__":
    unittest.main()
