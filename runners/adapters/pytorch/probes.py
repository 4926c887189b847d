"""What this PyTorch build really does, found by trying it at hello, never by its
version string: builds of one release differ (Debian's 2.6 has no libuv and an
FSDP2 that cannot run on the CPU), so a version says too little.

- The TCPStore behind env:// rendezvous: PyTorch >= 2.4 asks for its libuv
  backend (USE_LIBUV defaults to 1); a build without libuv refuses, and every
  rank retries once with USE_LIBUV=0, as PyTorch's own message suggests.
- FSDP2: a capability is declared only once a tiny fully_shard forward and
  backward ran on the device of the run (spec/ADAPTERS.md, "capabilities lists
  what the adapter really implements")."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from . import composable as cp

# TCPStore's TORCH_CHECK (its typo "build" may be fixed one day: accept both).
LIBUV_MISSING = re.compile(r"use_libuv was requested but PyTorch was buil[dt] without libuv support")
LIBUV_NOTE = "TCPStore: this PyTorch has no libuv; rendezvous retried with USE_LIBUV=0"


def init_process_group(backend: str, rank: int, world_size: int) -> bool:
    """dist.init_process_group from torchrun's environment (env://). True when it
    had to fall back to the TCPStore without libuv. Every rank takes the same path:
    the check fails in TCPStore's constructor, before any rank connects."""
    try:
        dist.init_process_group(backend, rank=rank, world_size=world_size)
        return False
    except Exception as e:  # noqa: BLE001 - the store's error type moved between releases
        if not LIBUV_MISSING.search(str(e)):
            raise
    discard_failed_init()
    os.environ["USE_LIBUV"] = "0"  # read by the env:// rendezvous on each call
    dist.init_process_group(backend, rank=rank, world_size=world_size)  # once: a second failure is the error
    return True


def discard_failed_init() -> None:
    # The libuv check fails while the rendezvous creates its store, before the
    # default group exists; should a release get further, the retry must not find
    # a half-made group ("trying to initialize the default process group twice").
    if dist.is_initialized():
        dist.destroy_process_group()


# -- capability probes ---------------------------------------------------------------
# A case names FSDP2 only through `fully_shard` in `needs` (one that composes it
# with replicate needs both), so a failed FSDP2 probe withholds just that name.
FSDP2_CAPABILITIES = ("fully_shard",)


@dataclass(frozen=True)
class Probe:
    """A capability is kept only when `run(device, world_size)` returns; whatever
    it raises withholds `withholds`. Every rank runs it, in the same order."""
    capability: str
    withholds: tuple[str, ...]
    what: str
    run: Callable[[str, int], None]


def placement(device: str) -> torch.device:
    """Where the run's tensors live (interpreter.CaseRun.placement)."""
    return torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device("cpu")


def fully_shard_train_step(device: str, world_size: int) -> None:
    """A fresh nn.Linear(2, 2) → fully_shard → forward → backward, then dropped:
    the module's registry, FSDP state, hooks and gradients live on it and go with
    it, and skip_init leaves the global RNG untouched. Collectives for every rank
    (all-gather, reduce-scatter)."""
    fully_shard = cp.fully_shard_api()
    if fully_shard is None:
        raise ImportError("fully_shard is not importable")
    where = placement(device)
    model = torch.nn.utils.skip_init(nn.Linear, 2, 2, device=where)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    # As interpreter.step_apply: a CPU run on a machine with an accelerator names a CPU mesh.
    kwargs = {"mesh": cp.whole_world_mesh("cpu", world_size)} if cp.cpu_mesh_needed(device) else {}
    # No gc.collect() after it (0.2 s): what is left is unreachable garbage that
    # holds no hook on anything a case uses.
    fully_shard(model, **kwargs)
    model(torch.ones(1, 2, device=where)).sum().backward()


PROBES = (Probe("fully_shard", FSDP2_CAPABILITIES, "fully_shard, forward and backward of a fresh nn.Linear(2, 2)",
                fully_shard_train_step),)


def failure(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:200]}"


def probe_capabilities(capabilities: list[str], device: str, world_size: int,
                       probes: tuple[Probe, ...] = PROBES) -> tuple[list[str], list[str]]:
    """The capabilities left once each declared probe ran, and a note per withheld one.
    Call it with the process group up; a probe of an undeclared capability is not run."""
    kept, notes = list(capabilities), []
    for probe in probes:
        if probe.capability not in kept:
            continue
        reason = run_probe(probe, device, world_size)
        if reason is not None:
            kept = [c for c in kept if c not in probe.withholds]
            notes.append(f"{', '.join(probe.withholds)} withheld: {probe.what} on {device} raised {reason}")
    return kept, notes


def run_probe(probe: Probe, device: str, world_size: int) -> Optional[str]:
    try:
        probe.run(device, world_size)
    except Exception as e:  # noqa: BLE001 - any failure withholds the capability, and says why
        return failure(e)
    return None
