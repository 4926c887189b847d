"""`bench mod_tracker`: what a ModTracker with user hooks adds to forward +
backward, on the reference (reference/bench/ccts-bench-tracker.cpp, C++) and
on PyTorch (runners/benchmarks/pytorch_tracker.py), each against itself
without a tracker in the same process.

Each side (one process for all fixtures) times steps without a tracker and
inside a ModTracker scope whose four user hooks count their calls and record
the module's FQN, alternating the two modes (the order swapped every step).
The figure is the ratio of the median wall-clock step times; the target is
the reference's ratio <= 1.05 on every fixture, with PyTorch's ratio printed
beside it. The same ratio of this thread's CPU time is printed too: it leaves
out time other processes held the CPU, which a busy machine adds to some
steps. The hook counts, checked against modules x steps and between the
sides, show the hooks really ran.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

from .ranks import (MALLOC_TUNED, BenchError, bench_binary, fixtures_dir, launch, load_note, median,
                    write_summary)

TARGET = 1.05
FIXTURES = ("CompositeModel", "BenchTracker100")
DEFAULTS = (10, 200)  # warm-up and timed steps per mode; --smoke: (1, 2)
HOOK_KINDS = ("pre_fw", "post_fw", "pre_bw", "post_bw")


def tracker_binary() -> Path:
    return bench_binary("ccts-bench-tracker")


@dataclass
class SideResult:
    """One side's measurements on one fixture."""
    side: str
    torch: str
    plain_ms: list[float]
    tracked_ms: list[float]
    plain_cpu_ms: list[float]
    tracked_cpu_ms: list[float]
    hook_calls: dict[str, int]
    hook_fqns: dict[str, list[str]]
    plain_loss: float
    tracked_loss: float

    @property
    def median_plain_ms(self) -> float:
        return median(self.plain_ms)

    @property
    def median_tracked_ms(self) -> float:
        return median(self.tracked_ms)

    @property
    def ratio(self) -> float:
        return self.median_tracked_ms / self.median_plain_ms

    @property
    def cpu_ratio(self) -> float:
        return median(self.tracked_cpu_ms) / median(self.plain_cpu_ms)

    @property
    def paired_ratio(self) -> float:
        """The median of each step's tracked / untracked time (the two ran back to back)."""
        return median([t / p for t, p in zip(self.tracked_ms, self.plain_ms)])

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "median_plain_ms": self.median_plain_ms,
                "median_tracked_ms": self.median_tracked_ms, "ratio": self.ratio, "paired_ratio": self.paired_ratio, "cpu_ratio": self.cpu_ratio}


@dataclass
class FixtureResult:
    fixture: str
    modules: int
    numel: int
    input_shape: list[int]
    steps: int
    reference: SideResult
    pytorch: SideResult

    @property
    def expected_calls(self) -> int:
        # Every module of these fixtures runs once per forward, and its output
        # and inputs need gradients: each hook fires once per module and step.
        return self.modules * self.steps

    @property
    def calls_as_expected(self) -> bool:
        return all(side.hook_calls == dict.fromkeys(HOOK_KINDS, self.expected_calls)
                   for side in (self.reference, self.pytorch))

    @property
    def fqns_agree(self) -> bool:
        return self.reference.hook_fqns == self.pytorch.hook_fqns

    @property
    def target_met(self) -> bool:
        return self.reference.ratio <= TARGET

    def to_json(self) -> dict[str, Any]:
        return {"fixture": self.fixture, "modules": self.modules, "numel": self.numel,
                "input_shape": self.input_shape, "expected_calls": self.expected_calls,
                "calls_as_expected": self.calls_as_expected, "fqns_agree": self.fqns_agree,
                "target_met": self.target_met,
                "sides": {"reference": self.reference.to_json(), "pytorch": self.pytorch.to_json()}}


def side_result(side: dict[str, Any], fixture: dict[str, Any]) -> SideResult:
    return SideResult(side=side["side"], torch=side["torch"], plain_ms=fixture["plain_ms"],
                      tracked_ms=fixture["tracked_ms"], plain_cpu_ms=fixture["plain_cpu_ms"],
                      tracked_cpu_ms=fixture["tracked_cpu_ms"], hook_calls=fixture["hook_calls"],
                      hook_fqns=fixture["hook_fqns"], plain_loss=fixture["plain_loss"],
                      tracked_loss=fixture["tracked_loss"])


def bench(args: argparse.Namespace, fixtures: list[str], warmup: int, steps: int) -> list[FixtureResult]:
    common = ["--fixtures", str(fixtures_dir(args)), "--warmup", str(warmup), "--steps", str(steps),
              "--threads", str(args.threads)]
    for fixture in fixtures:
        common += ["--fixture", fixture]
    env = dict(MALLOC_TUNED) if args.malloc == "tuned" else {}
    printed = {}
    for side, command in (("reference", [str(tracker_binary()), *common]),
                          ("pytorch", [args.ddp_python, "-m", "runners.benchmarks.pytorch_tracker", *common])):
        printed[side] = launch(f"{side} side", command, 1, args.threads, args.timeout, env).ranks[0]
        print(f"  {side}: done", flush=True)
    results = []
    for ref, pt in zip(printed["reference"]["fixtures"], printed["pytorch"]["fixtures"]):
        if (ref["fixture"], ref["modules"], ref["numel"]) != (pt["fixture"], pt["modules"], pt["numel"]):
            raise BenchError(f"{ref['fixture']}: the sides built different models ({ref['modules']} modules, "
                             f"{ref['numel']} parameters against {pt['modules']}, {pt['numel']})")
        results.append(FixtureResult(fixture=ref["fixture"], modules=ref["modules"], numel=ref["numel"],
                                     input_shape=ref["input_shape"], steps=steps,
                                     reference=side_result(printed["reference"], ref),
                                     pytorch=side_result(printed["pytorch"], pt)))
    return results


def print_table(results: list[FixtureResult]) -> None:
    print(f"{'fixture':<17}{'modules':>8}  {'side':<28}{'without':>9}{'with':>9}{'ratio':>8}{'paired':>8}"
          f"{'cpu':>8}  target")
    for r in results:
        for side, label in ((r.reference, f"reference (LibTorch {r.reference.torch})"),
                            (r.pytorch, f"PyTorch ({r.pytorch.torch})")):
            target = ""
            if side is r.reference:
                target = f"<= {TARGET}: {'met' if r.target_met else 'NOT met'}"
            first = side is r.reference
            print(f"{r.fixture if first else '':<17}{r.modules if first else '':>8}  {label:<28}"
                  f"{side.median_plain_ms:9.3f}{side.median_tracked_ms:9.3f}{side.ratio:8.3f}"
                  f"{side.paired_ratio:8.3f}{side.cpu_ratio:8.3f}  {target}")


def print_checks(results: list[FixtureResult]) -> None:
    for r in results:
        calls = " ".join(f"{k} {r.reference.hook_calls[k]}/{r.pytorch.hook_calls[k]}" for k in HOOK_KINDS)
        state = "as expected" if r.calls_as_expected else "NOT as expected"
        fqns = "the same" if r.fqns_agree else "DIFFERENT"
        print(f"hooks {r.fixture:<17}: calls reference/PyTorch {calls} ({state}: modules x steps = "
              f"{r.expected_calls} each); FQNs of a tracked step {fqns} on both sides")
        losses = (r.reference.plain_loss, r.reference.tracked_loss, r.pytorch.plain_loss, r.pytorch.tracked_loss)
        print(f"loss  {r.fixture:<17}: reference {losses[0]:.7g} without, {losses[1]:.7g} with; "
              f"PyTorch {losses[2]:.7g}, {losses[3]:.7g}")


def main(args: argparse.Namespace) -> int:
    warmup, steps = (1, 2) if args.smoke else DEFAULTS
    warmup = warmup if args.warmup is None else args.warmup
    steps = steps if args.steps is None else args.steps
    fixtures = [args.fixture] if args.fixture else list(FIXTURES)
    try:
        if warmup < 1 or steps < 1 or args.threads < 1:
            raise BenchError("--warmup, --steps and --threads must be >= 1")
        if not tracker_binary().exists():
            raise BenchError(f"{tracker_binary()} is not built (cmake --build build --target ccts-bench-tracker)")
        print(f"ccts bench mod_tracker: {load_note()}", flush=True)
        results = bench(args, fixtures, warmup, steps)
    except BenchError as e:
        print(f"error: {e}")
        return 1
    print()
    print(f"setup    : forward + backward of the output's sum, without a tracker and inside a ModTracker scope "
          f"with four user hooks (each counts its call and appends the module's FQN); {warmup} warm-up + {steps} "
          f"timed steps per mode, modes alternating in one process per side; {args.threads} thread(s)")
    print("figures  : median wall-clock step time in ms without and with; ratio = with / without (the figure); "
          "paired = median of each step pair's ratio; cpu = the ratio of this thread's CPU time")
    print()
    print_table(results)
    print()
    print_checks(results)
    met = all(r.target_met for r in results)
    finite = all(math.isfinite(x) and x > 0 for r in results for s in (r.reference, r.pytorch)
                 for x in (s.ratio, s.paired_ratio, s.cpu_ratio))
    print(f"target   : reference ratio <= {TARGET} on every fixture: {'met' if met else 'NOT met'}")
    summary = {"target": TARGET, "target_met": met, "ratios_finite": finite, "warmup": warmup, "steps": steps,
               "threads": args.threads, "malloc": args.malloc, "fixtures": [r.to_json() for r in results]}
    write_summary(args, summary)
    return 0
