"""`ccts bench replicate | fully_shard` in their tiny mode (--smoke: the tiny
twins of fixtures/bench.yaml, 1 warm-up + 2 steps, one round), and the PyTorch
side's vectorized portable generator. The smoke runs need the built
ccts-bench (CCTS_BUILD_DIR or build/) and PyTorch in this interpreter (the
PyTorch side runs on it). They check what must hold whatever the timings:
both sides train the same model, the compute-only runs too, DDP and the
reference agree on several buckets, parameter bytes follow the shard rule and
torch.chunk, and every ratio exists; never a timing target."""
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
from ccts_common import portable_values as pv
from runners.benchmarks.ranks import bench_binary
from runners.suite import ROOT, load_fixtures

HAS_TORCH = importlib.util.find_spec("torch") is not None


def positive_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


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
        self.assertIn("step ratio reference/DDP", text)
        runs = {run["fixture"]: run for run in summary["runs"]}
        # Both the compute-bound and the overhead-bound twin, at 2 ranks.
        self.assertEqual(sorted(runs), ["BenchMLPSmoke", "BenchManySmallSmoke"])
        for name, run in runs.items():
            with self.subTest(fixture=name):
                self.assertEqual(run["world_size"], 2)
                self.assertTrue(run["param_sums_equal"], text)
                self.assertLess(run["losses_max_rel_diff"], 1e-5, text)
                # The compute-only runs (--api none both sides) train the same model too.
                self.assertLess(run["compute_losses_max_rel_diff"], 1e-5, text)
                self.assertTrue(run["buckets_equal"], text)
                self.assertTrue(positive_finite(run["targets"]["step"]["ratio"]), text)
                self.assertTrue(positive_finite(run["targets"]["compute_only"]["ratio"]), text)
                for side in ("reference", "ddp", "reference_compute", "pytorch_compute"):
                    self.assertEqual(run["sides"][side]["timed_steps"], 2)
                for target in run["targets"].values():
                    self.assertIsInstance(target["target_met"], bool)
        # The overhead-bound twin's bucket cap (0.002 MiB) splits its 8 layers
        # into several buckets on both sides: 2 layers (4 parameters) each.
        many = runs["BenchManySmallSmoke"]
        self.assertEqual(many["bucket_cap_mb"], 0.002)
        self.assertEqual([len(b) for b in many["buckets"]["reference"]], [4, 4, 4, 4])
        self.assertEqual(len(runs["BenchMLPSmoke"]["buckets"]["reference"]), 1)
        self.assertEqual(summary["target_met"], all(run["target_met"] for run in summary["runs"]))

    def test_fully_shard(self) -> None:
        import torch
        from runners.adapters.pytorch import fixtures as builder
        text, summary = self.bench("fully_shard")
        self.assertIn("shard rule", text)
        rows = {row["world_size"]: row for row in summary["world_sizes"]}
        self.assertEqual(sorted(rows), [1, 2])
        params = list(builder.build_module(load_fixtures(ROOT / "fixtures")["BenchMLPSmoke"], seed=0).parameters())
        for ws, row in rows.items():
            with self.subTest(world_size=ws):
                ref, fsdp2 = row["sides"]["reference"], row["sides"]["fsdp2"]
                self.assertTrue(row["targets"]["param_bytes"]["target_met"], text)
                # Storage: the padded shards, on both sides.
                self.assertEqual(ref["param_bytes"], [row["shard_rule_bytes"]] * ws)
                self.assertEqual(fsdp2["param_bytes"], [row["shard_rule_bytes"]] * ws)
                # The shards themselves: torch.chunk's rows on each rank
                # (at 2 ranks, BenchMLPSmoke's last Linear's 7 rows leave rank 1 three).
                chunked = [sum(c[rank].numel() * c[rank].element_size() if rank < len(c) else 0
                               for c in (torch.chunk(p.detach(), ws) for p in params)) for rank in range(ws)]
                self.assertEqual(ref["local_shard_bytes"], chunked)
                self.assertEqual(fsdp2["local_shard_bytes"], chunked)
                self.assertTrue(row["targets"]["same_model"]["target_met"], text)
                self.assertTrue(positive_finite(row["targets"]["step"]["ratio"]), text)
                self.assertTrue(positive_finite(row["targets"]["peak_memory"]["ratio"]), text)
                self.assertGreater(ref["timed_steps"], 0)
        self.assertEqual(rows[1]["sides"]["reference"]["param_bytes"], [rows[1]["full_param_bytes"]])
        self.assertLess(rows[2]["sides"]["reference"]["local_shard_bytes"][1], rows[2]["shard_rule_bytes"])


if __name__ == "__main__":
    unittest.main()
