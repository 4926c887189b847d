"""`ccts bench mod_tracker --smoke`: both sides on both fixtures, 1 warm-up +
2 steps per mode. Needs the built ccts-bench-tracker (CCTS_BUILD_DIR or
build/) and PyTorch in this interpreter (PyTorch's side runs on it). No
timing assertions: the hooks ran as often as they must, on both sides alike."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
import tempfile
import unittest
from pathlib import Path

from runners import cli
from runners.benchmarks.tracker import FIXTURES, HOOK_KINDS, tracker_binary

HAS_TORCH = importlib.util.find_spec("torch") is not None


@unittest.skipUnless(HAS_TORCH, "PyTorch is not installed")
@unittest.skipUnless(tracker_binary().exists(), f"ccts-bench-tracker is not built ({tracker_binary()})")
class SmokeTest(unittest.TestCase):
    def test_mod_tracker(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = cli.main(["bench", "mod_tracker", "--smoke", "--ddp-python", sys.executable,
                                 "--timeout", "60", "--json", str(out)])
            text = printed.getvalue()
            self.assertEqual(code, 0, text)
            summary = json.loads(out.read_text())
        self.assertIn("ratio", text)
        self.assertEqual(summary["steps"], 2)
        rows = {row["fixture"]: row for row in summary["fixtures"]}
        self.assertEqual(sorted(rows), sorted(FIXTURES))
        self.assertEqual(rows["BenchTracker100"]["modules"], 100)
        self.assertEqual(rows["CompositeModel"]["modules"], 17)
        for name, row in rows.items():
            ref, pt = row["sides"]["reference"], row["sides"]["pytorch"]
            # Each of the four hooks once per module and timed step, on both sides.
            expected = dict.fromkeys(HOOK_KINDS, row["modules"] * 2)
            self.assertEqual(ref["hook_calls"], expected, name)
            self.assertEqual(pt["hook_calls"], expected, name)
            self.assertTrue(row["calls_as_expected"], name)
            # The same modules, by the same FQNs, in the same order per hook kind.
            self.assertEqual(ref["hook_fqns"], pt["hook_fqns"], name)
            self.assertEqual(len(ref["hook_fqns"]["pre_fw"]), row["modules"], name)
            self.assertEqual(ref["hook_fqns"]["pre_fw"][0], "Sequential" if name == "BenchTracker100" else name)
            # The tracker changes no value; both sides built the same model.
            self.assertEqual(ref["plain_loss"], ref["tracked_loss"], name)
            self.assertAlmostEqual(ref["plain_loss"], pt["plain_loss"],
                                   delta=1e-4 * max(1.0, abs(pt["plain_loss"])))
            for side in (ref, pt):
                self.assertEqual(len(side["plain_ms"]), 2)
                self.assertEqual(len(side["tracked_ms"]), 2)
                self.assertTrue(math.isfinite(side["ratio"]) and side["ratio"] > 0, name)
        self.assertTrue(summary["ratios_finite"])


if __name__ == "__main__":
    unittest.main()
