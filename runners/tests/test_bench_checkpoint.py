"""`ccts bench checkpoint --smoke`: both sides checkpoint for real. The
checkpointed forward keeps far less than the plain one (a checkpoint that
kept the region's activations, as the reference's did before saved-tensor
hooks, keeps as much), and checkpointing changes no loss or gradient. Needs
the built ccts-bench-checkpoint (CCTS_BUILD_DIR or build/) and PyTorch here."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from runners import cli
from runners.benchmarks.checkpoint import PAIRS, binary, measure

HAS_TORCH = importlib.util.find_spec("torch") is not None


@unittest.skipUnless(HAS_TORCH, "PyTorch is not installed")
@unittest.skipUnless(binary().exists(), f"ccts-bench-checkpoint is not built ({binary()})")
class SmokeTest(unittest.TestCase):
    def test_checkpoint(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = cli.main(["bench", "checkpoint", "--smoke", "--ddp-python", sys.executable, "--timeout", "60",
                                 "--json", str(out)])
            text = printed.getvalue()
            self.assertEqual(code, 0, text)
            summary = json.loads(out.read_text())
        self.assertIn("checkpointed/plain", text)
        for side in ("reference", "pytorch"):
            s = summary["sides"][side]
            self.assertTrue(s["same_gradients"], text)
            # 3 blocks of 2 (Linear, ReLU): plainly 2 activations a block are
            # kept, checkpointed 1 (the block's input).
            self.assertLess(s["kept_ratio"], 0.75, text)
            self.assertGreater(s["kept_ratio"], 0.0, text)
        ref = summary["sides"]["reference"]["runs"]
        self.assertEqual(ref["plain"]["saved_tensors_packed"], 0)
        self.assertGreater(ref["checkpointed"]["saved_tensors_packed"], 0)
        self.assertEqual(summary["losses_max_rel_diff"], 0.0, text)

    def test_mutant_keeps_activations(self) -> None:
        """The test above can fail: with the saved-tensor hooks off, the
        checkpointed forward keeps what the plain one does."""
        fixtures = str(Path(__file__).resolve().parents[2] / "fixtures")
        kept = {}
        with mock.patch.dict(os.environ, {"CCTS_MUTANT": "checkpoint_keeps_activations"}):
            for mode, fixture in zip(("plain", "checkpointed"), PAIRS[True]):
                run = measure([str(binary()), "--fixtures", fixtures, "--fixture", fixture, "--steps", "1"], 1, 60)
                kept[mode] = run["kept_forward_bytes"]
                self.assertEqual(run["saved_tensors_packed"], 0)
        self.assertGreater(kept["checkpointed"] / kept["plain"], 0.9, kept)


if __name__ == "__main__":
    unittest.main()
