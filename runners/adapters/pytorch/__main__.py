"""python3 -m runners.adapters.pytorch: one rank of the PyTorch adapter
(spec/ADAPTERS.md). stdout carries the protocol only."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

PROTOCOL = 2


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def hello(message: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from . import probes
    from .interpreter import capabilities

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend, device = message.get("backend", "gloo"), message.get("device", "cpu")
    cuda = torch.cuda.is_available()
    backends = ["gloo"] + (["nccl"] if cuda and dist.is_nccl_available() else [])
    devices = ["cpu"] + (["cuda"] if cuda else [])
    notes: list[str] = []
    # Asked for what it lacks, it says hello without a process group; the runner
    # then reports every case unsupported.
    if backend in backends and device in devices and not dist.is_initialized():
        if device == "cuda":  # one GPU per rank where there are enough, as torchrun's users do
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
        if probes.init_process_group(backend, rank, world_size):
            notes.append(probes.LIBUV_NOTE)
    caps = capabilities()
    if dist.is_initialized():  # the probes are collectives; without a group every case is unsupported anyway
        caps, withheld = probes.probe_capabilities(caps, device, world_size)
        notes += withheld
    build = build_info()
    if notes:  # why a capability is missing, in the report's Build line (spec/ADAPTERS.md)
        build["probes"] = "; ".join(notes)
    return {"type": "hello", "protocol": PROTOCOL, "name": "pytorch", "version": torch.__version__,
            "capabilities": caps, "backends": backends, "devices": devices,
            "build": build, "rank": rank, "world_size": world_size}


def build_info() -> dict[str, Any]:
    """What the report records of this PyTorch: version, CUDA, NCCL, the GPU."""
    import torch
    import torch.distributed as dist

    info: dict[str, Any] = {"libtorch": torch.__version__.split("+")[0], "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_count"] = torch.cuda.device_count()
        if dist.is_nccl_available():
            version = torch.cuda.nccl.version()  # a tuple since 1.x's int
            info["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return info


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError as e:
            send({"type": "error", "message": f"message is not JSON: {e}"})
            return 2
        kind = message.get("type")
        if kind == "hello":
            if message.get("protocol") != PROTOCOL:
                send({"type": "error", "message": f"protocol version {message.get('protocol')} is not supported; "
                                                  f"this adapter speaks version {PROTOCOL}"})
                return 2
            send(hello(message))
        elif kind == "run":
            from .interpreter import run_case
            send(run_case(message, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])))
        elif kind == "bye":
            send({"type": "bye"})
            return 0
        else:
            send({"type": "error", "message": f"unknown message type '{kind}'"})
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
