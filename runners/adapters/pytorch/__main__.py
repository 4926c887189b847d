"""python3 -m runners.adapters.pytorch: one rank of the PyTorch adapter
(spec/ADAPTERS.md). stdout carries the protocol only."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

PROTOCOL = 1


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def hello(message: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from .interpreter import capabilities

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = message.get("backend", "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    caps = capabilities()
    backends = ["gloo"] + (["nccl"] if dist.is_nccl_available() and torch.cuda.is_available() else [])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {"type": "hello", "protocol": PROTOCOL, "name": "pytorch", "version": torch.__version__,
            "capabilities": caps, "backends": backends, "devices": devices,
            "build": {"libtorch": torch.__version__.split("+")[0], "cuda": torch.version.cuda},
            "rank": rank, "world_size": world_size}


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
