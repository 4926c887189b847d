"""One rank of `./ccts bench replicate | fully_shard`'s PyTorch side: the
fixture (default BenchMLP) built by the PyTorch adapter's fixture builder, and
--api ddp: wrapped in DistributedDataParallel; fully_shard: FSDP2's
fully_shard on each Linear, then the root, on a CPU DeviceMesh; none: left a
plain nn.Module (the compute alone). Trained like reference/bench/ccts-bench.cpp
trains the reference: zero_grad(set_to_none), forward, MSE loss against the
portable generator's target, backward, SGD step. Prints one JSON line with the
same fields as ccts-bench.

Run per rank with torchrun's environment:
    .venv/bin/python -m runners.benchmarks.pytorch_baseline --api ddp --warmup 2 --steps 8 --threads 1
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import sys
import time
import types
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ccts_common import portable_values as pv

from ..adapters.pytorch import fixtures as builder
from ..suite import ROOT, load_fixtures

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter

# -- the portable generator (spec/values.md), vectorized ---------------------
# The same integer hash as ccts_common/portable_values.py on int64 tensors (uint64
# arithmetic: multiplication wraps, right shifts are masked to be logical).
_MASK = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK
    return value - (1 << 64) if value >= 1 << 63 else value


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix64(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shr(z, 30)) * _signed(0xBF58476D1CE4E5B9)
    z = (z ^ _shr(z, 27)) * _signed(0x94D049BB133111EB)
    return z ^ _shr(z, 31)


def _unit_uniform(seed: int, stream: int, count: int) -> torch.Tensor:
    """unit_uniform(seed, stream, i) for i < count, as float64."""
    head = _signed(pv.mix64(pv.mix64((seed + pv.GOLDEN) & pv.MASK) ^ ((stream + pv.GOLDEN) & pv.MASK)))
    index = torch.arange(count, dtype=torch.int64) + _signed(pv.GOLDEN)
    h = _mix64(index ^ head)
    return _shr(h, 40).to(torch.float64) * (1.0 / 16777216.0)


def fast_uniform(shape: list[int], low: float, high: float, seed: int, stream: int) -> list[float]:
    u = _unit_uniform(seed, stream, pv.numel(shape))
    return u.mul_(high - low).add_(low).to(torch.float32).tolist()


def fast_normal(shape: list[int], seed: int, stream: int) -> list[float]:
    n = pv.numel(shape)
    # Each term is a multiple of 2^-24 below 1: any summation order is exact.
    u = _unit_uniform(seed, stream, 12 * n).view(n, 12).sum(dim=1)
    return u.sub_(6.0).to(torch.float32).tolist()


def check_fast_generator() -> None:
    """The vectorized generator gives pv's values bit for bit (raises otherwise)."""
    stream = pv.fnv1a64("bench:check")
    for seed in (0, 3):
        if fast_uniform([257], -0.03, 0.03, seed, stream) != pv.uniform([257], -0.03, 0.03, seed, stream):
            raise AssertionError("vectorized uniform differs from ccts_common/portable_values.py")
        if fast_normal([33], seed, stream) != pv.normal([33], seed, stream):
            raise AssertionError("vectorized normal differs from ccts_common/portable_values.py")


def use_fast_generator() -> None:
    """The adapter's fixture builder with the vectorized generator (same values)."""
    check_fast_generator()
    builder.pv = types.SimpleNamespace(fnv1a64=pv.fnv1a64, uniform=fast_uniform, normal=fast_normal)


# -- one rank ----------------------------------------------------------------
class Phases:
    def __init__(self) -> None:
        self.step: list[float] = []
        self.parts: dict[str, list[float]] = {"zero_grad": [], "forward": [], "backward": [], "optimizer": []}

    def add(self, t: list[float]) -> None:
        self.step.append((t[4] - t[0]) * 1e3)
        for i, name in enumerate(self.parts):
            self.parts[name].append((t[i + 1] - t[i]) * 1e3)


def set_gradient_sync(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """A context in which backward synchronises gradients or not: DDP's
    no_sync(), FSDP2's set_requires_gradient_sync; a plain module has no sync."""
    if sync:
        return contextlib.nullcontext()
    if isinstance(model, DistributedDataParallel):
        return model.no_sync()
    if not hasattr(model, "set_requires_gradient_sync"):  # FSDPModule's method
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def fsdp_no_sync() -> Any:
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    return fsdp_no_sync()


class Trainer:
    def __init__(self, model: torch.nn.Module, x: torch.Tensor, rank: int, lr: float) -> None:
        self.model = model
        self.x = x
        self.rank = rank
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        self.target: torch.Tensor | None = None

    def step(self, phases: Phases | None, sync: bool = True, zero_grad: bool = True,
             peaks: list[int] | None = None) -> float:
        """One training step; its phases go to `phases`, the peak RSS after
        forward and after backward to `peaks` when given."""
        context = set_gradient_sync(self.model, sync)
        t = [time.perf_counter()]
        if zero_grad:
            self.optimizer.zero_grad(set_to_none=True)
        t.append(time.perf_counter())
        with context:
            out = self.model(self.x)
            if self.target is None:
                self.target = builder.generated(list(out.shape), "normal", self.rank, "bench:target")
            loss = F.mse_loss(out, self.target)
            t.append(time.perf_counter())
            if peaks is not None:
                peaks.append(status_bytes("VmHWM"))
            loss.backward()
        t.append(time.perf_counter())
        if peaks is not None:
            peaks.append(status_bytes("VmHWM"))
        self.optimizer.step()
        t.append(time.perf_counter())
        if phases is not None:
            phases.add(t)
        return loss.item()


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return -1


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def local_main(argv: list[str] | None, prog: str, doc: str, run: Callable[[argparse.Namespace], dict[str, Any]],
               fixture: dict[str, Any], warmup: int, steps: int) -> int:
    """main() of a one-process twin (pytorch_tracker, pytorch_checkpoint):
    the options ccts-bench-tracker and ccts-bench-checkpoint take, one JSON line."""
    p = argparse.ArgumentParser(prog=f"python3 -m runners.benchmarks.{prog}", description=doc.splitlines()[0])
    p.add_argument("--fixtures", default=str(ROOT / "fixtures"))
    p.add_argument("--fixture", **fixture)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.threads < 1:
        p.error("--warmup, --steps and --threads must be >= 1")
    print(json.dumps(run(args)), flush=True)
    return 0


def memory_step(trainer: Trainer, losses: list[float]) -> dict[str, Any]:
    """As ccts-bench: the peak of forward + backward + SGD over the resting state."""
    trainer.optimizer.zero_grad(set_to_none=True)
    ctypes.CDLL(None).malloc_trim(0)
    dist.barrier()
    before = status_bytes("VmRSS")
    reset = reset_peak_rss()
    peaks: list[int] = []
    losses.append(trainer.step(None, zero_grad=False, peaks=peaks))
    peak = status_bytes("VmHWM")
    return {"rss_before_bytes": before, "hwm_bytes": peak, "peak_step_bytes": peak - before,
            "peak_forward_bytes": peaks[0] - before, "peak_backward_bytes": peaks[1] - before, "hwm_reset": reset}


def shard_rule_bytes(p: torch.Tensor, world: int) -> int:
    """ceil(rows / world) * cols * element size: the padded shard, as in ccts-bench."""
    rows = p.shape[0] if p.dim() else 1
    cols = p.numel() // rows if rows else 0
    return -(-rows // world) * cols * p.element_size()


def wrap(model: torch.nn.Module, api: str, bucket_cap_mb: float | None) -> torch.nn.Module:
    """The model under `api`, as ccts-bench applies the reference's."""
    if api == "ddp":
        return DistributedDataParallel(model) if bucket_cap_mb is None else \
            DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)
    if api == "fully_shard":
        # Imported here: the DDP side also runs on PyTorch releases without FSDP2.
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for sub in model.modules():
            if sub is not model and isinstance(sub, torch.nn.Linear):
                fully_shard(sub, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model


def local_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """What each parameter holds on this rank: a DTensor's local shard."""
    return [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]


def storage_bytes(tensors: list[torch.Tensor]) -> int:
    """As ccts-bench: the bytes of the distinct storages (FSDP2's local shard
    is a view of its padded per-rank buffer: the whole buffer counts)."""
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.memory:
        # As ccts-bench: blocks of 64 KiB or more mmapped, unmapped on free, for the whole run.
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", timeout=timedelta(seconds=float(os.environ.get("CCTS_PG_TIMEOUT_S", "120"))))
    rank, world = dist.get_rank(), dist.get_world_size()
    fixture = load_fixtures(Path(args.fixtures))[args.fixture]
    start = time.perf_counter()
    if not args.pure_generator:
        use_fast_generator()
    model = builder.build_module(fixture, seed=0)
    inputs, kwargs = builder.make_input(fixture, rank)
    build_ms = (time.perf_counter() - start) * 1e3
    if len(inputs) != 1 or kwargs or not isinstance(inputs[0], torch.Tensor):
        raise ValueError(f"fixture {args.fixture}: the benchmark needs one tensor input")
    params = list(model.parameters())
    full_bytes = sum(p.numel() * p.element_size() for p in params)
    rule_bytes = sum(shard_rule_bytes(p, world) for p in params)
    param_sum = 0.0
    for p in params:
        param_sum += p.detach().double().sum().item()

    wrapped = wrap(model, args.api, args.bucket_cap_mb)
    shards = local_tensors(wrapped)
    param_bytes = storage_bytes(shards)
    local_bytes = sum(t.numel() * t.element_size() for t in shards)
    trainer = Trainer(wrapped, inputs[0], rank, args.lr)
    losses = [trainer.step(None) for _ in range(args.warmup)]
    dist.barrier()
    timed = Phases()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(args.steps):
        losses.append(trainer.step(timed))
    faults_per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
    param_bytes_after = storage_bytes(local_tensors(wrapped))
    memory = memory_step(trainer, losses) if args.memory else None
    nosync = Phases()
    if args.nosync_steps and args.api != "none":
        dist.barrier()
        for _ in range(args.nosync_steps):
            trainer.step(nosync, sync=False)
    # The collective alone: one all-reduce of as many floats as the model has.
    allreduce_ms = []
    if args.allreduce_probe:
        flat = torch.ones(sum(p.numel() for p in params))
        dist.barrier()
        for _ in range(args.allreduce_probe):
            start = time.perf_counter()
            dist.all_reduce(flat)
            allreduce_ms.append((time.perf_counter() - start) * 1e3)
    dist.barrier()
    indices = None
    if isinstance(wrapped, DistributedDataParallel):
        indices = wrapped._get_ddp_logging_data().get("rebuilt_per_bucket_param_indices")  # after the rebuild
    return {
        "side": "pytorch", "api": args.api, "torch": torch.__version__, "fixture": args.fixture, "rank": rank,
        "world_size": world, "threads": torch.get_num_threads(), "bucket_cap_mb": args.bucket_cap_mb,
        "input_shape": list(inputs[0].shape),
        "numel": sum(p.numel() for p in params), "full_param_bytes": full_bytes, "shard_rule_bytes": rule_bytes,
        "param_bytes": param_bytes, "local_shard_bytes": local_bytes, "param_bytes_after_steps": param_bytes_after,
        "param_sum": param_sum,
        "build_ms": build_ms, "step_ms": timed.step, "phase_ms": timed.parts,
        "minor_faults_per_step": faults_per_step, "nosync_step_ms": nosync.step, "nosync_phase_ms": nosync.parts,
        "allreduce_ms": allreduce_ms, "losses": losses, "memory": memory,
        "buckets": [[int(i) for i in b.split()] for b in indices.split(",")] if isinstance(indices, str) else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m runners.benchmarks.pytorch_baseline",
                                description=__doc__.splitlines()[0])
    p.add_argument("--api", choices=["ddp", "fully_shard", "none"], default="ddp",
                   help="DistributedDataParallel, FSDP2's fully_shard (each Linear, then the root), or none")
    p.add_argument("--fixtures", default=str(ROOT / "fixtures"))
    p.add_argument("--fixture", default="BenchMLP")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--nosync-steps", type=int, default=0)
    p.add_argument("--allreduce-probe", type=int, default=0, help="time this many bare all-reduces of the model's size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--bucket-cap-mb", type=float, help="DDP's bucket_cap_mb (default: DDP's, 25)")
    p.add_argument("--memory", action="store_true", help="measure one more step's peak RSS")
    p.add_argument("--pure-generator", action="store_true",
                   help="build with ccts_common/portable_values.py as is (slow; the default is a vectorized twin)")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be >= 1")
    if args.bucket_cap_mb is not None and not args.bucket_cap_mb > 0:
        p.error("--bucket-cap-mb must be positive")
    print(json.dumps(run(args)), flush=True)
    # No process-group teardown: Gloo's (torch 1.13) can spin when the peers
    # leave at different moments. Every collective is done; leave now.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
