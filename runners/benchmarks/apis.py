"""`bench replicate` and `bench fully_shard`: training-step benchmarks of the
reference's composable APIs, each against PyTorch's own measured in the same run.

replicate    the reference's replicate against DistributedDataParallel, a
             compute-bound and an overhead-bound model, 2 and 4 ranks, and
             each side's compute alone (replicate_vs_ddp.py).
fully_shard  the reference's fully_shard against FSDP2, 2 and 4 ranks: step
             time, peak memory of a step, parameter bytes against the shard
             rule (fully_shard_vs_fsdp2.py).

Each rank is a process started with torchrun's environment (ranks.py); each
prints one JSON line of measurements, which these modules gather and compare.
"""
from __future__ import annotations

import argparse

from . import fully_shard_vs_fsdp2, replicate_vs_ddp
from .ranks import BenchError, Plan, bench_binary, fixtures_dir, write_summary

DEFAULTS = {  # (warm-up, timed steps, no-sync steps, rounds) per verb; --smoke: (1, 2, 0, 1)
    "replicate": (2, 5, 0, 2),
    "fully_shard": (2, 5, 0, 2),
}
SMOKE_FIXTURE = "BenchMLPSmoke"


def plan_from(args: argparse.Namespace) -> Plan:
    warmup, steps, nosync, rounds = (1, 2, 0, 1) if args.smoke else DEFAULTS[args.what]
    pick = lambda value, default: default if value is None else value  # noqa: E731
    plan = Plan(fixtures_dir=fixtures_dir(args),
                fixture=args.fixture or (SMOKE_FIXTURE if args.smoke else "BenchMLP"),
                warmup=pick(args.warmup, warmup), steps=pick(args.steps, steps),
                nosync_steps=pick(args.nosync_steps, nosync), rounds=pick(args.rounds, rounds),
                threads=args.threads, lr=args.lr, timeout=args.timeout, pytorch_python=args.ddp_python,
                malloc=args.malloc)
    if plan.warmup < 1 or plan.steps < 1 or plan.rounds < 1 or plan.threads < 1 or plan.nosync_steps < 0:
        raise BenchError("--warmup, --steps, --rounds and --threads must be >= 1, --nosync-steps >= 0")
    if args.bucket_cap_mb is not None and not args.bucket_cap_mb > 0:
        raise BenchError("--bucket-cap-mb must be positive")
    return plan


def main(args: argparse.Namespace) -> int:
    try:
        plan = plan_from(args)
        if not bench_binary().exists():
            raise BenchError(f"{bench_binary()} is not built (./ccts bench {args.what} builds it; "
                             "or cmake --build build --target ccts-bench)")
        verb = replicate_vs_ddp if args.what == "replicate" else fully_shard_vs_fsdp2
        summary = verb.bench(args, plan)
    except BenchError as e:
        print(f"error: {e}")
        return 1
    write_summary(args, summary)
    return 0
