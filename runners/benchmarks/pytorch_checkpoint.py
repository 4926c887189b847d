"""PyTorch's side of `./ccts bench checkpoint`: the fixture built by the
PyTorch adapter's fixture builder, its `checkpoint` op being
torch.utils.checkpoint(use_reentrant=False) as in the adapter, measured as
reference/bench/ccts-bench-checkpoint.cpp measures the reference: forward +
MSE loss + backward, the RSS kept at the end of forward and the peak of one
step from the resting state, then timed steps. Prints the same JSON fields.

    .venv/bin/python -m runners.benchmarks.pytorch_checkpoint --fixture BenchDeepCheckpointed
"""
from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..adapters.pytorch import fixtures as builder
from ..suite import load_fixtures
from .pytorch_baseline import M_MMAP_THRESHOLD, local_main, reset_peak_rss, status_bytes, use_fast_generator


def non_reentrant(module: torch.nn.Module, args: list) -> Any:
    return checkpoint(module, *args, use_reentrant=False, preserve_rng_state=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    libc = ctypes.CDLL(None)
    libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)  # as ccts-bench-checkpoint: the RSS follows what is alive
    torch.set_num_threads(args.threads)
    fixture = load_fixtures(Path(args.fixtures))[args.fixture]
    use_fast_generator()
    model = builder.build_module(fixture, seed=0, checkpoint=non_reentrant)
    inputs, kwargs = builder.make_input(fixture, 0)
    if len(inputs) != 1 or kwargs or not isinstance(inputs[0], torch.Tensor):
        raise ValueError(f"fixture {args.fixture}: the benchmark needs one tensor input")
    x = inputs[0]
    params = list(model.parameters())
    target: list[torch.Tensor] = []

    def forward() -> torch.Tensor:
        out = model(x)
        if not target:
            target.append(builder.generated(list(out.shape), "normal", 0, "bench:target"))
        return F.mse_loss(out, target[0])

    losses = []
    for _ in range(args.warmup):
        model.zero_grad(set_to_none=True)
        loss = forward()
        loss.backward()
        losses.append(loss.item())

    model.zero_grad(set_to_none=True)
    libc.malloc_trim(0)
    before = status_bytes("VmRSS")
    reset = reset_peak_rss()
    loss = forward()
    kept_forward = status_bytes("VmRSS") - before
    peak_forward = status_bytes("VmHWM") - before
    loss.backward()
    peak_step = status_bytes("VmHWM") - before
    losses.append(loss.item())
    del loss

    step_ms, forward_ms, backward_ms = [], [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss = forward()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        step_ms.append((t2 - t0) * 1e3)
        forward_ms.append((t1 - t0) * 1e3)
        backward_ms.append((t2 - t1) * 1e3)
        losses.append(loss.item())
    grad_sum = sum(p.grad.double().sum().item() for p in params if p.grad is not None)
    return {
        "side": "pytorch", "torch": torch.__version__, "fixture": args.fixture, "threads": torch.get_num_threads(),
        "input_shape": list(x.shape), "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "rss_before_bytes": before, "kept_forward_bytes": kept_forward, "peak_forward_bytes": peak_forward,
        "peak_step_bytes": peak_step, "hwm_reset": reset, "saved_tensors_packed": None,
        "step_ms": step_ms, "forward_ms": forward_ms, "backward_ms": backward_ms, "losses": losses,
        "grad_sum": grad_sum,
    }


def main(argv: list[str] | None = None) -> int:
    return local_main(argv, "pytorch_checkpoint", __doc__, run, {"default": "BenchDeepCheckpointed"}, 1, 5)

if __name__ == "__main__":
    sys.exit(main())
