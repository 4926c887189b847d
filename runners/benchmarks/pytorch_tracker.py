"""`./ccts bench mod_tracker`'s PyTorch side: each fixture named (--fixture,
repeatable; default BenchTracker100) built by the PyTorch adapter's fixture
builder, forward + backward of the output's sum timed without a tracker and inside
torch.distributed._tools.mod_tracker.ModTracker with four user hooks that
count their calls and record the module's FQN, as
reference/bench/ccts-bench-tracker.cpp does for the reference's ModTracker.
The modes alternate, the order swapped every step. Prints one JSON line with
the same fields as ccts-bench-tracker.

    .venv/bin/python -m runners.benchmarks.pytorch_tracker --fixture CompositeModel --fixture BenchTracker100
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.distributed._tools.mod_tracker import ModTracker

from ..adapters.pytorch import fixtures as builder
from ..suite import load_fixtures
from .pytorch_baseline import local_main, use_fast_generator

HOOK_KINDS = ("pre_fw", "post_fw", "pre_bw", "post_bw")


class HookRecord:
    """Calls per hook kind, and the FQNs each kind saw in the latest tracked step."""

    def __init__(self, tracker: ModTracker) -> None:
        self.tracker = tracker
        self.calls = dict.fromkeys(HOOK_KINDS, 0)
        self.fqns: dict[str, list[str]] = {kind: [] for kind in HOOK_KINDS}

    def new_step(self) -> None:
        for fqns in self.fqns.values():
            fqns.clear()

    def hook(self, kind: str) -> Callable[..., None]:
        calls, fqns, tracker = self.calls, self.fqns[kind], self.tracker

        def record(module: nn.Module, *_: Any) -> None:
            calls[kind] += 1
            fqns.append(tracker.get_known_fqn(module) or "?")
        return record


class Stepper:
    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.model = model
        self.x = x
        self.tracker = ModTracker()
        self.record = HookRecord(self.tracker)
        self.tracker.register_user_hooks(*(self.record.hook(kind) for kind in HOOK_KINDS))

    def step(self, tracked: bool) -> tuple[float, float, float]:
        """One forward + backward, inside the tracker when `tracked`: (ms, this
        thread's CPU ms, loss). CPU backward runs on the calling thread."""
        self.model.zero_grad(set_to_none=True)
        if tracked:
            self.record.new_step()
        cpu_start = time.thread_time()
        start = time.perf_counter()
        if tracked:
            with self.tracker:
                loss = self.forward_backward()
        else:
            loss = self.forward_backward()
        ms = (time.perf_counter() - start) * 1e3
        cpu_ms = (time.thread_time() - cpu_start) * 1e3
        return ms, cpu_ms, loss.item()

    def forward_backward(self) -> torch.Tensor:
        loss = self.model(self.x).sum()
        loss.backward()
        return loss


def bench_fixture(args: argparse.Namespace, fixture: dict[str, Any]) -> dict[str, Any]:
    model = builder.build_module(fixture, seed=0)
    inputs, kwargs = builder.make_input(fixture, 0)
    if len(inputs) != 1 or kwargs or not isinstance(inputs[0], torch.Tensor):
        raise ValueError(f"fixture {fixture['name']}: the benchmark needs one tensor input")
    stepper = Stepper(model, inputs[0])
    for _ in range(args.warmup):
        stepper.step(False)
        stepper.step(True)
    for kind in HOOK_KINDS:  # count the timed steps only
        stepper.record.calls[kind] = 0
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu_times: dict[bool, list[float]] = {False: [], True: []}
    losses: dict[bool, float] = {}
    for i in range(args.steps):
        for tracked in (i % 2 == 1, i % 2 == 0):
            ms, cpu_ms, losses[tracked] = stepper.step(tracked)
            times[tracked].append(ms)
            cpu_times[tracked].append(cpu_ms)
    return {
        "fixture": fixture["name"], "modules": len(list(model.named_modules())),
        "numel": sum(p.numel() for p in model.parameters()), "input_shape": list(inputs[0].shape),
        "plain_ms": times[False], "tracked_ms": times[True],
        "plain_cpu_ms": cpu_times[False], "tracked_cpu_ms": cpu_times[True],
        "hook_calls": dict(stepper.record.calls),
        "hook_fqns": {k: list(v) for k, v in stepper.record.fqns.items()},
        "plain_loss": losses[False], "tracked_loss": losses[True],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    fixtures = load_fixtures(Path(args.fixtures))
    use_fast_generator()
    results = [bench_fixture(args, fixtures[name]) for name in args.fixture or ["BenchTracker100"]]
    return {"side": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "warmup": args.warmup, "steps": args.steps, "fixtures": results}


def main(argv: list[str] | None = None) -> int:
    return local_main(argv, "pytorch_tracker", __doc__, run,
                      {"action": "append", "help": "repeatable (default BenchTracker100)"}, 5, 30)

if __name__ == "__main__":
    sys.exit(main())
