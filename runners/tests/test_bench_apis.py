"""`ccts bench replicate | fully_shard` in their tiny mode (--smoke: the
BenchMLPSmoke fixture, 1 warm-up + 2 steps), and the DDP side's vectorized
portable generator. The smoke runs need the built ccts-bench (CCTS_BUILD_DIR
or build/) and PyTorch in this interpreter (the DDP side runs on it)."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path

from runners import cli
from ccts_common import portable_values as pv
from runners.benchmarks.apis import bench_binary

HAS_TORCH = importlib.util.find_spec("torch") is not None


@unittest.skipUnless(HAS_TORCH, "PyTorch is not installed")
class FastGeneratorTest(unittest.TestCase):
    def test_matches_portable_values(self) -> None:
        from runners.benchmarks import pytorch_baseline
        for seed, name, n in ((0, "0.weight", 1000), (7, "input:0", 129), (1 << 40, "bench:target", 3)):
            stream = pv.fnv1a64(name)
            self.assertEqual(pytorch_baseline.fast_uniform([n], -0.5, 0.25, seed, stream),
                             pv.uniform([n], -0.5, 0.25, seed, stream))
            self.assertEqual(pytorch_baseline.fast_normal([n], seed, stream), pv.normal([n], seed, stream))


@unittest.skipUnless(HAS_TORCH, "PyTorch is not installed")
@unittest.skipUnless(bench_binary().exists(), f"ccts-bench is not built ({bench_binary()})")
class SmokeTest(unittest.TestCase):
    def bench(self, *args: str) -> tuple[str, dict]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = cli.main(["bench", *args, "--smoke", "--ddp-python", sys.executable, "--timeout", "60",
                                 "--json", str(out)])
            self.assertEqual(code, 0, printed.getvalue())
            return printed.getvalue(), json.loads(out.read_text())

    def test_replicate(self) -> None:
        text, summary = self.bench("replicate")
        self.assertIn("ratio reference/DDP", text)
        self.assertEqual(summary["world_size"], 2)
        self.assertTrue(summary["param_sums_equal"], text)
        self.assertLess(summary["losses_max_rel_diff"], 1e-5, text)
        self.assertGreater(summary["ratio"], 0)

    def test_fully_shard(self) -> None:
        text, summary = self.bench("fully_shard")
        self.assertIn("shard rule", text)
        rows = {row["world_size"]: row for row in summary["world_sizes"]}
        self.assertEqual(sorted(rows), [1, 2])
        for ws, row in rows.items():
            self.assertTrue(row["exact"], text)
            self.assertEqual(row["param_bytes"], [row["shard_rule_bytes"]] * ws)
        self.assertEqual(rows[1]["param_bytes"], [rows[1]["full_param_bytes"]])
        self.assertTrue(summary["target_met"])


if __name__ == "__main__":
    unittest.main()
