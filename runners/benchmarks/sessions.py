"""`bench`: the suite's throughput. Per adapter (the reference's and the
PyTorch one on the pinned PyTorch, in one run): the time per case x world
size with persistent rank groups, against a baseline measured in the same run:
a fresh rank group per case (what spawning processes per test, as PyTorch's
MultiProcessTestCase does, costs). Then the oracle's share of the last ctest
run's time, from ctest's own log in the build folder."""
from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..execute import RunOptions, Runner, apply_xfail, default_adapter, implementation_version, load_xfail, select
from ..session import RankGroup
from ..suite import ROOT, Suite, resolved_fixtures, suite_from

TARGET_S = 0.3  # reference adapter, per case x world size
PYTORCH_XFAIL = ROOT / "runners" / "adapters" / "pytorch" / "expected-failures.txt"


@dataclass
class Throughput:
    label: str
    cases: int
    outcomes: dict[str, int]
    persistent_s: float  # per case x world size
    fresh_s: float  # per case x world size, the sample
    sampled: int


def measure(label: str, adapter: str, suite: Suite, args: argparse.Namespace, timeout: float,
            xfail: Path | None = None) -> Throughput:
    runner = Runner(suite, RunOptions(adapter=adapter, world_sizes=args.world_sizes, patterns=args.patterns, quiet=True,
                                      timeout=timeout))
    baseline_cases = args.baseline_cases
    plan = runner.plan(select(suite.load_cases(), runner.options), {})
    if not plan:
        return Throughput(label, 0, {}, float("nan"), float("nan"), 0)
    print(f"  {label}: {len(plan)} cases x world sizes ...", flush=True)
    start = time.perf_counter()
    outcomes: dict[str, int] = {}
    entries = load_xfail(xfail) if xfail else []
    for case, ws in plan:
        result = runner.run_one(case, ws)
        apply_xfail(result, entries, True, implementation_version(runner))
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    runner.close()
    persistent = (time.perf_counter() - start) / len(plan)

    # Baseline: the same kind of work with a fresh group per case, on an even
    # sample across world sizes.
    sample = plan[:: max(1, len(plan) // max(1, baseline_cases))][:baseline_cases]
    start = time.perf_counter()
    for case, ws in sample:
        group = RankGroup(adapter, ws)
        try:
            group.start(timeout)
            group.run_case(case.data, resolved_fixtures(case, suite), timeout)
        finally:
            group.close()
    fresh = (time.perf_counter() - start) / len(sample)
    return Throughput(label, len(plan), outcomes, persistent, fresh, len(sample))


def ctest_times(build: Path) -> dict[str, float] | None:
    """Each test's time in the last ctest run in `build`, from LastTest.log."""
    log = build / "Testing" / "Temporary" / "LastTest.log"
    if not log.exists():
        return None
    times: dict[str, float] = {}
    name = None
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"\d+/\d+ Test: (\S+)", line)
        if m:
            name = m.group(1)
            continue
        m = re.match(r'Test time =\s*([0-9.]+) sec', line)
        if m and name:
            times[name] = float(m.group(1))
            name = None
    return times


def main(args: argparse.Namespace) -> int:
    suite: Suite = suite_from(args)
    adapters = [("reference adapter", args.adapter or default_adapter(), None)]
    if not args.adapter:
        # Its expected failures as the oracle's CTest tests read them.
        adapters.append(("PyTorch adapter", f"{args.ddp_python} -m runners.adapters.pytorch", PYTORCH_XFAIL))
    print(f"ccts bench: world sizes {args.world_sizes}; each adapter runs the selection with persistent rank "
          f"groups, then {args.baseline_cases} sampled cases with a fresh group each", flush=True)
    results = [measure(label, adapter, suite, args, 180.0, xfail) for label, adapter, xfail in adapters]
    if not results[0].cases:
        print("no cases")
        return 0

    print()
    print(f"{'adapter':<36}{'cases':>7}{'s/case persistent':>19}{'s/case fresh':>14}{'ratio':>8}   outcomes")
    for r in results:
        outcomes = ", ".join(f"{v} {k}" for k, v in sorted(r.outcomes.items()))
        print(f"{r.label:<36}{r.cases:>7}{r.persistent_s:>19.4f}{r.fresh_s:>14.4f}{r.persistent_s / r.fresh_s:>8.3f}   "
              f"{outcomes}")
    ref = results[0]
    if len(results) > 1:
        print(f"PyTorch / reference : {results[1].persistent_s / ref.persistent_s:.2f} x the time per case x world size")
    print(f"target              : reference <= {TARGET_S} s per case x world size: "
          f"{'met' if ref.persistent_s <= TARGET_S else 'NOT met'}")

    build = Path(args.ctest_dir or os.environ.get("CCTS_BUILD_DIR", ROOT / "build"))
    times = ctest_times(build)
    if not times:
        print(f"ctest               : no log of a ctest run in {build} (./ccts test writes one)")
        return 0
    total = sum(times.values())
    oracle = sum(t for name, t in times.items() if name.startswith("oracle."))
    print(f"ctest (last run)    : {len(times)} tests, {total:.0f} s of test time; the oracle (oracle.*) "
          f"{oracle:.0f} s = {oracle / total:.1%} of it ({build / 'Testing/Temporary/LastTest.log'})")
    return 0
