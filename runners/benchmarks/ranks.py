"""Rank groups of the API benchmarks (`./ccts bench replicate | fully_shard`):
one process per rank, started with torchrun's environment, each printing one
JSON line of measurements; the plan both sides run under; small formatting
helpers. The reference's ranks are reference/bench/ccts-bench, PyTorch's
runners/benchmarks/pytorch_baseline.py."""
from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..session import free_port
from ..suite import ROOT

# --malloc tuned: one fixed glibc malloc policy for every rank of both sides.
# With glibc's defaults, the heap top of a process may be trimmed after each
# step and the next step's gradient blocks faulted in again: measured on
# BenchMLP, about 9,000 minor faults per step in ccts-bench against 30 to
# 3,000 in the Python ranks, whose other allocations tend to pin the top. That
# is heap layout, not the engines; it cost the reference ~15 ms per step.
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024)}


class BenchError(Exception):
    """A rank failed or printed no result; the message carries its stderr tail."""


def bench_binary(name: str = "ccts-bench") -> Path:
    """A benchmark program of reference/bench/ in CCTS_BUILD_DIR (default build/)."""
    build = Path(os.environ.get("CCTS_BUILD_DIR", ROOT / "build"))
    return build / "reference" / "bench" / name


@dataclass
class Launch:
    """One rank group's results, one dict per rank."""
    label: str
    ranks: list[dict[str, Any]] = field(default_factory=list)

    def per_step(self, key: str = "step_ms", phase: str | None = None) -> list[float]:
        """Per step, the slowest rank's time (the step is done when every rank is)."""
        series = [r[key][phase] if phase else r[key] for r in self.ranks]
        return [max(values) for values in zip(*series)]


def launch(label: str, command: list[str], world_size: int, threads: int, timeout: float,
           extra_env: dict[str, str] | None = None) -> Launch:
    port = free_port()
    processes: list[tuple[subprocess.Popen, Any, Any]] = []
    for rank in range(world_size):
        env = dict(os.environ)
        env.update(extra_env or {})
        env.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                    "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                    # Both sides: the same thread pools and the loopback device.
                    "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "GLOO_SOCKET_IFNAME": "lo",
                    "CCTS_PG_TIMEOUT_S": str(int(timeout)),
                    "PYTHONPATH": str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")})
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        try:
            process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT, start_new_session=True)
        except OSError as e:
            _stop(processes)
            raise BenchError(f"{label}: cannot start {command[0]}: {e}") from None
        processes.append((process, out, err))
    deadline = time.monotonic() + timeout
    result = Launch(label)
    try:
        for rank, (process, out, err) in enumerate(processes):
            try:
                code = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchError(f"{label}: rank {rank} did not finish in {timeout:.0f} s\n{_tail(err)}") from None
            out.seek(0)
            lines = [line for line in out.read().decode(errors="replace").splitlines() if line.startswith("{")]
            if code != 0 or not lines:
                raise BenchError(f"{label}: rank {rank} exited with {code}"
                                 f"{'' if lines else ' and no result'}:\n{_tail(err)}")
            result.ranks.append(json.loads(lines[-1]))
    finally:
        _stop(processes)
    return result


def _tail(err: Any, lines: int = 15) -> str:
    err.seek(0)
    return "\n".join(err.read().decode(errors="replace").splitlines()[-lines:])


def _stop(processes: list[tuple[subprocess.Popen, Any, Any]]) -> None:
    for process, out, err in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
            process.wait()
        out.close()
        err.close()


@dataclass
class Plan:
    """What every rank of both sides runs: fixture, step counts, threads, malloc policy."""
    fixtures_dir: Path
    fixture: str
    warmup: int
    steps: int
    nosync_steps: int
    rounds: int
    threads: int
    lr: float
    timeout: float
    pytorch_python: str
    malloc: str = "tuned"

    def env(self) -> dict[str, str]:
        return dict(MALLOC_TUNED) if self.malloc == "tuned" else {}

    def describe_malloc(self) -> str:
        if self.malloc == "tuned":
            return "glibc malloc tuned alike on both sides (mmap threshold 32 MiB, trim threshold 1 GiB)"
        return "glibc malloc defaults"

    def common(self) -> list[str]:
        return ["--fixtures", str(self.fixtures_dir), "--fixture", self.fixture, "--warmup", str(self.warmup),
                "--steps", str(self.steps), "--threads", str(self.threads), "--lr", repr(self.lr)]

    def reference(self, api: str, *extra: str) -> list[str]:
        """A ccts-bench rank: --api replicate, fully_shard or none."""
        return [str(bench_binary()), "--api", api, *self.common(), *extra]

    def pytorch(self, api: str, *extra: str) -> list[str]:
        """A pytorch_baseline rank: --api ddp, fully_shard or none."""
        return [self.pytorch_python, "-m", "runners.benchmarks.pytorch_baseline", "--api", api, *self.common(),
                *extra]

    def run(self, label: str, command: list[str], world_size: int) -> Launch:
        return launch(label, command, world_size, self.threads, self.timeout, self.env())


# -- the bench options every verb reads -------------------------------------------
def fixtures_dir(args: Any) -> Path:
    """--fixtures-dir, or the suite's fixtures/."""
    return Path(args.fixtures_dir).resolve() if args.fixtures_dir else ROOT / "fixtures"


def write_summary(args: Any, summary: dict[str, Any]) -> None:
    """--json PATH: the summary, every ratio with its target_met."""
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        print(f"results  : {args.json}")


# -- figures and formatting ------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator when both are finite and the denominator positive, else None."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return None
    return numerator / denominator


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def mib(n: float) -> float:
    return n / (1024 * 1024)


def describe_model(rank: dict[str, Any]) -> str:
    return (f"{rank['fixture']} ({rank['numel']:,} parameters, {rank['full_param_bytes']:,} bytes), "
            f"per-rank batch {rank['input_shape']}")


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs before the run"


def met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("met" if flag else "NOT met")


def losses_rel_diff(a: Launch, b: Launch) -> float:
    """The largest relative difference of rank 0's losses, step by step."""
    pairs = list(zip(a.ranks[0]["losses"], b.ranks[0]["losses"]))
    return max((abs(x - y) / max(abs(y), 1e-30) for x, y in pairs), default=0.0)


def describe_losses(a: Launch, b: Launch) -> str:
    pairs = list(zip(a.ranks[0]["losses"], b.ranks[0]["losses"]))
    worst = losses_rel_diff(a, b)
    same = (f"rank 0's {len(pairs)} losses identical" if worst == 0.0
            else f"rank 0's {len(pairs)} losses within {worst:.1e} (relative)")
    first, last = pairs[0], pairs[-1]
    return f"{same} (first {first[0]:.7g} vs {first[1]:.7g}, last {last[0]:.7g} vs {last[1]:.7g})"


def param_sums(a: Launch, b: Launch) -> tuple[str, bool]:
    """Whether both sides built the same values: every rank's parameter sum
    before any API touched (or broadcast) them."""
    sums_a = {r["param_sum"] for r in a.ranks}
    sums_b = {r["param_sum"] for r in b.ranks}
    equal = sums_a == sums_b and len(sums_a) == 1
    text = "initial parameter sums equal" if equal else \
        f"initial parameter sums DIFFER ({a.label} {sorted(sums_a)}, {b.label} {sorted(sums_b)})"
    return text, equal
