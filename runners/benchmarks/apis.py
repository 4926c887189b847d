"""`bench replicate` and `bench fully_shard`: training-step benchmarks of the
reference's composable APIs, each against a baseline measured in the same run.

replicate    the reference's replicate (reference/bench/ccts-bench.cpp, C++)
             against PyTorch's DistributedDataParallel (runners/benchmarks/pytorch_baseline.py),
             same fixture values, batches, loss, optimizer, threads and Gloo.
fully_shard  at each world size: per-rank parameter bytes after fully_shard
             against the shard rule, the peak RSS of one step, and step time
             against the reference's replicate at the same world size.

Each rank is a process started with torchrun's environment; each prints one
JSON line of measurements, which this module gathers and compares.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
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

REPLICATE_TARGET = 0.9
SMOKE_FIXTURE = "BenchMLPSmoke"
# --malloc tuned: one fixed glibc malloc policy for every rank of both sides.
# With glibc's defaults, the heap top of a process may be trimmed after each
# step and the next step's gradient blocks faulted in again: measured on
# BenchMLP, about 9,000 minor faults per step in ccts-bench against 30 to
# 3,000 in the Python ranks, whose other allocations tend to pin the top. That
# is heap layout, not the engines; it cost the reference ~15 ms per step.
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024)}
DEFAULTS = {  # (warm-up, timed steps, no-sync steps, rounds) per verb; --smoke: (1, 2, 1, 1)
    "replicate": (2, 6, 2, 2),
    "fully_shard": (1, 3, 0, 1),
}


class BenchError(Exception):
    """A rank failed or printed no result; the message carries its stderr tail."""


def bench_binary() -> Path:
    build = Path(os.environ.get("CCTS_BUILD_DIR", ROOT / "build"))
    return build / "reference" / "bench" / "ccts-bench"


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


# -- commands ------------------------------------------------------------------
@dataclass
class Plan:
    fixtures_dir: Path
    fixture: str
    warmup: int
    steps: int
    nosync_steps: int
    rounds: int
    threads: int
    lr: float
    timeout: float
    ddp_python: str
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
        return [str(bench_binary()), "--api", api, *self.common(), *extra]

    def ddp(self, *extra: str) -> list[str]:
        return [self.ddp_python, "-m", "runners.benchmarks.pytorch_baseline", *self.common(), *extra]


def plan_from(args: argparse.Namespace) -> Plan:
    warmup, steps, nosync, rounds = (1, 2, 1, 1) if args.smoke else DEFAULTS[args.what]
    pick = lambda value, default: default if value is None else value  # noqa: E731
    plan = Plan(fixtures_dir=Path(args.fixtures_dir).resolve() if args.fixtures_dir else ROOT / "fixtures",
                fixture=args.fixture or (SMOKE_FIXTURE if args.smoke else "BenchMLP"),
                warmup=pick(args.warmup, warmup), steps=pick(args.steps, steps),
                nosync_steps=pick(args.nosync_steps, nosync), rounds=pick(args.rounds, rounds),
                threads=args.threads, lr=args.lr, timeout=args.timeout, ddp_python=args.ddp_python,
                malloc=args.malloc)
    if plan.warmup < 1 or plan.steps < 1 or plan.rounds < 1 or plan.threads < 1 or plan.nosync_steps < 0:
        raise BenchError("--warmup, --steps, --rounds and --threads must be >= 1, --nosync-steps >= 0")
    return plan


# -- formatting ----------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mib(n: float) -> float:
    return n / (1024 * 1024)


def describe_model(rank: dict[str, Any]) -> str:
    return (f"{rank['fixture']} ({rank['numel']:,} parameters, {rank['full_param_bytes']:,} bytes), "
            f"per-rank batch {rank['input_shape']}")


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs before the run"


# -- replicate -----------------------------------------------------------------
def bench_replicate(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    world_sizes = args.world_sizes or [2]
    if len(world_sizes) != 1:
        raise BenchError("bench replicate takes one world size (--world-sizes 2)")
    ws = world_sizes[0]
    print(f"ccts bench replicate: {load_note()}", flush=True)
    extra = ["--nosync-steps", str(plan.nosync_steps), "--allreduce-probe", "3"]
    sides: dict[str, list[Launch]] = {"reference": [], "ddp": []}
    for round_index in range(plan.rounds):
        # Interleaved, alternating which side goes first: drifts in machine load hit both.
        order = ["reference", "ddp"] if round_index % 2 == 0 else ["ddp", "reference"]
        for side in order:
            if side == "reference":
                launched = launch("reference replicate", plan.reference("replicate", *extra), ws, plan.threads,
                                  plan.timeout, plan.env())
            else:
                launched = launch("PyTorch DDP", plan.ddp(*extra), ws, plan.threads, plan.timeout, plan.env())
            sides[side].append(launched)
            print(f"  round {round_index + 1}/{plan.rounds}: {launched.label:<19} "
                  f"median step {median(launched.per_step()):9.2f} ms", flush=True)

    ref0, ddp0 = sides["reference"][0].ranks[0], sides["ddp"][0].ranks[0]
    summary: dict[str, Any] = {"world_size": ws, "threads": plan.threads, "warmup": plan.warmup, "steps": plan.steps,
                               "rounds": plan.rounds, "fixture": plan.fixture, "malloc": plan.malloc, "sides": {}}
    rows = []
    for side, label in (("reference", f"reference replicate (C++, LibTorch {ref0['torch']})"),
                        ("ddp", f"PyTorch DDP (Python, torch {ddp0['torch']})")):
        steps = [t for run in sides[side] for t in run.per_step()]
        phases = {phase: median([t for run in sides[side] for t in run.per_step("phase_ms", phase)])
                  for phase in ("forward", "backward", "optimizer", "zero_grad")}
        nosync = [t for run in sides[side] for t in run.per_step("nosync_step_ms")]
        nosync_backward = [t for run in sides[side] for t in run.per_step("nosync_phase_ms", "backward")]
        allreduce = [t for run in sides[side] for t in run.per_step("allreduce_ms")]
        faults = max(r["minor_faults_per_step"] for run in sides[side] for r in run.ranks)
        entry = {"median_step_ms": median(steps), "min_step_ms": min(steps), "max_step_ms": max(steps),
                 "phase_ms": phases, "nosync_median_step_ms": median(nosync),
                 "nosync_median_backward_ms": median(nosync_backward), "allreduce_median_ms": median(allreduce),
                 "minor_faults_per_step": faults,
                 "step_ms": steps}
        summary["sides"][side] = entry
        rows.append((label, entry))

    print()
    print(f"model    : {describe_model(ref0)}; MSE loss, SGD lr {plan.lr}")
    print(f"setup    : world size {ws}, Gloo over loopback, {plan.threads} thread(s) per rank on both sides; "
          f"{plan.rounds} round(s) x ({plan.warmup} warm-up + {plan.steps} timed steps) per side, "
          f"sides interleaved; a step's time is its slowest rank's; {plan.describe_malloc()}")
    print()
    header = f"{'':<44}{'median':>9}{'min':>9}{'max':>9} |{'forward':>9}{'backward':>9}{'optim':>8}{'zero':>7}"
    if plan.nosync_steps:
        header += f" |{'no-sync':>9}"
    print(header + f" |{'faults':>7}   (ms; faults: minor page faults per step, worst rank)")
    for label, e in rows:
        p = e["phase_ms"]
        line = (f"{label:<44}{e['median_step_ms']:9.2f}{e['min_step_ms']:9.2f}{e['max_step_ms']:9.2f} |"
                f"{p['forward']:9.2f}{p['backward']:9.2f}{p['optimizer']:8.2f}{p['zero_grad']:7.2f}")
        if plan.nosync_steps:
            line += f" |{e['nosync_median_step_ms']:9.2f}"
        print(line + f" |{e['minor_faults_per_step']:7.0f}")
    ratio = summary["sides"]["reference"]["median_step_ms"] / summary["sides"]["ddp"]["median_step_ms"]
    summary["ratio"] = ratio
    summary["target_met"] = ratio <= REPLICATE_TARGET
    print()
    print(f"ratio reference/DDP : {ratio:.3f} (median step time; minimums: "
          f"{summary['sides']['reference']['min_step_ms'] / summary['sides']['ddp']['min_step_ms']:.3f})")
    print(f"target              : ratio <= {REPLICATE_TARGET}: {'met' if summary['target_met'] else 'NOT met'}")
    if plan.nosync_steps:
        costs = [summary["sides"][s]["median_step_ms"] - summary["sides"][s]["nosync_median_step_ms"]
                 for s in ("reference", "ddp")]
        print(f"gradient sync cost  : step - no-sync step: reference {costs[0]:.2f} ms, DDP {costs[1]:.2f} ms "
              f"(no-sync: the same step without all-reduce)")
    bare = [summary["sides"][s]["allreduce_median_ms"] for s in ("reference", "ddp")]
    print(f"bare all-reduce     : {ref0['full_param_bytes']:,} bytes in one tensor: reference {bare[0]:.2f} ms, "
          f"DDP side {bare[1]:.2f} ms")
    buckets = [sides[s][0].ranks[0].get("buckets") for s in ("reference", "ddp")]
    summary["buckets"] = dict(zip(("reference", "ddp"), buckets))
    describe = lambda b: " | ".join(" ".join(map(str, bucket)) for bucket in b) if b else "?"  # noqa: E731
    print(f"buckets             : parameter indices in all-reduce order: reference {describe(buckets[0])}; "
          f"DDP {describe(buckets[1])}{'' if buckets[0] == buckets[1] else ' (DIFFERENT)'}")
    text, summary["param_sums_equal"], summary["losses_max_rel_diff"] = same_model(sides["reference"][0],
                                                                                   sides["ddp"][0])
    print(f"same model          : {text}")
    return summary


def same_model(ref: Launch, ddp: Launch) -> tuple[str, bool, float]:
    """Whether both sides trained the same values: parameter sums (every rank
    before the first broadcast) and rank 0's losses, step by step."""
    ref_sums = {r["param_sum"] for r in ref.ranks}
    ddp_sums = {r["param_sum"] for r in ddp.ranks}
    equal = ref_sums == ddp_sums and len(ref_sums) == 1
    sums = "initial parameter sums equal" if equal else \
        f"initial parameter sums DIFFER (reference {sorted(ref_sums)}, DDP {sorted(ddp_sums)})"
    pairs = list(zip(ref.ranks[0]["losses"], ddp.ranks[0]["losses"]))
    worst = max((abs(a - b) / max(abs(b), 1e-30) for a, b in pairs), default=0.0)
    losses = (f"rank 0's {len(pairs)} losses identical" if worst == 0.0
              else f"rank 0's {len(pairs)} losses within {worst:.1e} (relative)")
    first, last = pairs[0], pairs[-1]
    text = f"{sums}; {losses} (first {first[0]:.7g} vs {first[1]:.7g}, last {last[0]:.7g} vs {last[1]:.7g})"
    return text, equal, worst


# -- fully_shard ---------------------------------------------------------------
def bench_fully_shard(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    world_sizes = args.world_sizes or ([1, 2] if args.smoke else [1, 2, 4])
    print(f"ccts bench fully_shard: {load_note()}", flush=True)
    rows = []
    for ws in world_sizes:
        # Timing runs, then short memory runs (--memory mmaps large blocks for
        # the whole run, which would slow the timed steps).
        fs = launch(f"fully_shard ws {ws}", plan.reference("fully_shard"), ws, plan.threads, plan.timeout, plan.env())
        rep = launch(f"replicate ws {ws}", plan.reference("replicate"), ws, plan.threads, plan.timeout, plan.env())
        memory_plan = dataclasses.replace(plan, warmup=1, steps=1)
        fs_mem = launch(f"fully_shard memory ws {ws}", memory_plan.reference("fully_shard", "--memory"), ws,
                        plan.threads, plan.timeout, plan.env())
        rep_mem = launch(f"replicate memory ws {ws}", memory_plan.reference("replicate", "--memory"), ws,
                         plan.threads, plan.timeout, plan.env())
        first = fs.ranks[0]
        full = first["full_param_bytes"]
        rule = first["shard_rule_bytes"]
        row = {
            "world_size": ws,
            "param_bytes": [r["param_bytes"] for r in fs.ranks],
            "param_bytes_after_steps": [r["param_bytes_after_steps"] for r in fs.ranks],
            "full_param_bytes": full,
            "shard_rule_bytes": rule,
            "fraction": max(r["param_bytes"] for r in fs.ranks) / full,
            "rule_fraction": rule / full,
            "exact": all(r["param_bytes"] == rule and r["param_bytes_after_steps"] == rule for r in fs.ranks),
            "peak_step_mib": mib(max(r["memory"]["peak_step_bytes"] for r in fs_mem.ranks)),
            "peak_forward_mib": mib(max(r["memory"]["peak_forward_bytes"] for r in fs_mem.ranks)),
            "peak_backward_mib": mib(max(r["memory"]["peak_backward_bytes"] for r in fs_mem.ranks)),
            "replicate_peak_step_mib": mib(max(r["memory"]["peak_step_bytes"] for r in rep_mem.ranks)),
            "replicate_peak_forward_mib": mib(max(r["memory"]["peak_forward_bytes"] for r in rep_mem.ranks)),
            "replicate_peak_backward_mib": mib(max(r["memory"]["peak_backward_bytes"] for r in rep_mem.ranks)),
            "step_ms": median(fs.per_step()),
            "replicate_step_ms": median(rep.per_step()),
            "phase_ms": {p: median(fs.per_step("phase_ms", p)) for p in ("forward", "backward", "optimizer")},
            "replicate_phase_ms": {p: median(rep.per_step("phase_ms", p))
                                   for p in ("forward", "backward", "optimizer")},
            "hwm_reset": all(r["memory"]["hwm_reset"] for r in fs_mem.ranks + rep_mem.ranks),
        }
        row["ratio"] = row["step_ms"] / row["replicate_step_ms"]
        rows.append(row)
        print(f"  world size {ws}: fully_shard {row['step_ms']:.2f} ms, replicate {row['replicate_step_ms']:.2f} ms "
              f"per step (median)", flush=True)

    print()
    print(f"model    : {describe_model(first)}; MSE loss, SGD lr {plan.lr}")
    print(f"setup    : fully_shard on every Linear, then the root (FSDP2's way); Gloo over loopback; {plan.threads} "
          f"thread(s) per rank; {plan.warmup} warm-up + {plan.steps} timed steps per run; a step's time is its "
          f"slowest rank's; {plan.describe_malloc()}")
    print(f"memory   : separate runs with every block >= 64 KiB mmapped (so the RSS follows what is alive); after "
          f"1 warm-up + 1 step, zero_grad(set_to_none) and malloc_trim, one step's forward + backward + SGD: "
          f"peak = VmHWM (reset through /proc/self/clear_refs) - VmRSS before it")
    print()
    print(f"{'world':>5} |{'param bytes/rank':>17}{'fraction':>10} |{'shard rule':>12}{'fraction':>10}{'exact':>7} |"
          f"{'peak MiB fs':>12}{'replicate':>10} |{'step ms fs':>11}{'replicate':>10}{'fs/rep':>8}")
    for row in rows:
        print(f"{row['world_size']:>5} |{max(row['param_bytes']):>17,}{row['fraction']:>10.4f} |"
              f"{row['shard_rule_bytes']:>12,}{row['rule_fraction']:>10.4f}{'yes' if row['exact'] else 'NO':>7} |"
              f"{row['peak_step_mib']:>12.1f}{row['replicate_peak_step_mib']:>10.1f} |"
              f"{row['step_ms']:>11.2f}{row['replicate_step_ms']:>10.2f}{row['ratio']:>8.3f}")
    print()
    print(f"{'world':>5} | phase ms (median) fully_shard {'fwd':>8}{'bwd':>9}{'optim':>8} | replicate "
          f"{'fwd':>8}{'bwd':>9}{'optim':>8} | peak MiB by end of fwd, bwd: fully_shard, replicate")
    for row in rows:
        f, r = row["phase_ms"], row["replicate_phase_ms"]
        print(f"{row['world_size']:>5} | {'':<29}{f['forward']:>8.2f}{f['backward']:>9.2f}{f['optimizer']:>8.2f} | "
              f"{'':<10}{r['forward']:>8.2f}{r['backward']:>9.2f}{r['optimizer']:>8.2f} | "
              f"{row['peak_forward_mib']:.1f}, {row['peak_backward_mib']:.1f}; "
              f"{row['replicate_peak_forward_mib']:.1f}, {row['replicate_peak_backward_mib']:.1f}")
    print()
    met = all(row["exact"] for row in rows)
    print("target   : per-rank parameter bytes == shard rule (sum of ceil(rows/N)*cols*element size, the padded "
          f"shards) at every world size, before and after training: {'met' if met else 'NOT met'}")
    if tuple(int(x) for x in first["torch"].split(".")[:2]) < (2, 8):
        print(f"note     : LibTorch {first['torch']}'s Gloo has no reduce_scatter; the reference all-reduces each "
              "group's whole gradient and keeps its chunk (reference/include/ccts/compat.h)")
    if not all(row["hwm_reset"] for row in rows):
        print("warning  : /proc/self/clear_refs could not be written; peaks are since process start")
    return {"fixture": plan.fixture, "threads": plan.threads, "warmup": plan.warmup, "steps": plan.steps,
            "target_met": met, "world_sizes": rows}


# -- entry -----------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    try:
        plan = plan_from(args)
        if not bench_binary().exists():
            raise BenchError(f"{bench_binary()} is not built (./ccts bench {args.what} builds it; "
                             "or cmake --build build --target ccts-bench)")
        summary = bench_replicate(args, plan) if args.what == "replicate" else bench_fully_shard(args, plan)
    except BenchError as e:
        print(f"error: {e}")
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        print(f"results  : {args.json}")
    return 0
