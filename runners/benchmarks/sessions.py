"""`bench`: amortized time per case x world size with persistent rank groups,
against a baseline measured in the same run: a fresh rank group per case (what
spawning processes per test, as PyTorch's MultiProcessTestCase does, costs)."""
from __future__ import annotations

import argparse
import time

from ..execute import RunOptions, Runner, default_adapter
from ..session import RankGroup
from ..suite import Suite, resolved_fixtures, suite_from


def main(args: argparse.Namespace) -> int:
    suite: Suite = suite_from(args)
    adapter = args.adapter or default_adapter()
    options = RunOptions(adapter=adapter, world_sizes=args.world_sizes, quiet=True)
    runner = Runner(suite, options)
    plan = runner.plan(suite.load_cases())
    if not plan:
        print("no cases")
        return 0

    start = time.perf_counter()
    outcomes: dict[str, int] = {}
    for case, ws in plan:
        result = runner.run_one(case, ws)
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    runner.close()
    persistent = (time.perf_counter() - start) / len(plan)

    # Baseline: the same kind of work with a fresh group per case, on an even
    # sample across world sizes.
    sample = plan[:: max(1, len(plan) // max(1, args.baseline_cases))][: args.baseline_cases]
    start = time.perf_counter()
    for case, ws in sample:
        group = RankGroup(adapter, ws)
        group.start(60)
        group.run_case(case.data, resolved_fixtures(case, suite), 60)
        group.close()
    fresh = (time.perf_counter() - start) / len(sample)

    print(f"cases x world sizes : {len(plan)} ({', '.join(f'{v} {k}' for k, v in sorted(outcomes.items()))})")
    print(f"persistent sessions : {persistent:.4f} s per case x world size (whole suite, world sizes {args.world_sizes})")
    print(f"fresh group per case: {fresh:.4f} s per case x world size (baseline, {len(sample)} sampled)")
    print(f"ratio               : {persistent / fresh:.3f} of the baseline ({fresh / persistent:.1f}x faster)")
    print(f"target              : <= 0.3 s per case x world size: {'met' if persistent <= 0.3 else 'NOT met'}")
    return 0
