"""`./ccts bench replicate`: the reference's replicate (ccts-bench, C++)
against PyTorch's DistributedDataParallel (pytorch_baseline.py), same fixture
values, batches, loss, optimizer, bucket cap, threads and Gloo, at each world
size, on a compute-bound model (BenchMLP) and an overhead-bound one
(BenchManySmall). Each side also runs its compute alone (no wrapper:
ccts-bench --api none, a plain nn.Module), which prices the gradient
synchronisation: step - compute-only."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from .ranks import (Launch, Plan, describe_losses, describe_model, fmt, load_note, losses_rel_diff, median, met,
                    param_sums, ratio)

PHASES = ("forward", "backward", "optimizer", "zero_grad")


@dataclass(frozen=True)
class Workload:
    """A fixture the benchmark trains, with the bucket cap both sides get, the
    step-time target (reference / DDP) it must meet, and its default warm-up
    and timed steps per run (--warmup, --steps override them)."""
    fixture: str
    kind: str
    bucket_cap_mb: float | None  # None: DDP's default (25 MiB, first bucket 1 MiB)
    step_target: float
    warmup: int
    steps: int


# The targets: no slower than DDP where the GEMMs dominate; at most
# 0.80 of DDP where per-layer work does (the reference has no Python in the step).
# BenchManySmall's steps take milliseconds: more of them, for a steadier median.
WORKLOADS = [Workload("BenchMLP", "compute-bound", None, 1.00, 2, 5),
             # 1 MiB: a bucket holds 16 of its 66 KB layers, 4 buckets.
             Workload("BenchManySmall", "overhead-bound", 0.0625, 0.80, 5, 25)]
# --smoke: the tiny twins (fixtures/bench.yaml); 0.002 MiB makes 4 buckets of 2 layers.
SMOKE_WORKLOADS = [Workload("BenchMLPSmoke", "compute-bound", None, 1.00, 1, 2),
                   Workload("BenchManySmallSmoke", "overhead-bound", 0.002, 0.80, 1, 2)]
# Both compute-only steps and sync overheads: the reference's at most DDP's.
COMPUTE_TARGET = 1.00

SIDES = {  # side -> its label; run_workload gives each its command
    "reference": "reference replicate",
    "ddp": "PyTorch DDP",
    "reference_compute": "reference compute only",
    "pytorch_compute": "PyTorch compute only",
}


def workloads(args: argparse.Namespace) -> list[Workload]:
    table = SMOKE_WORKLOADS if args.smoke else WORKLOADS
    chosen = table
    if args.fixture:
        known = {w.fixture: w for w in WORKLOADS + SMOKE_WORKLOADS}
        chosen = [known.get(args.fixture, Workload(args.fixture, "given", None, COMPUTE_TARGET, 2, 5))]
    if args.bucket_cap_mb is not None:
        chosen = [dataclasses.replace(w, bucket_cap_mb=args.bucket_cap_mb) for w in chosen]
    if args.warmup is not None:
        chosen = [dataclasses.replace(w, warmup=args.warmup) for w in chosen]
    if args.steps is not None:
        chosen = [dataclasses.replace(w, steps=args.steps) for w in chosen]
    return chosen


def run_workload(plan: Plan, work: Workload, ws: int) -> dict[str, Launch | list[Launch]]:
    """Every side's runs, interleaved round by round with the order rotating,
    so that drifts in machine load hit every side."""
    plan = dataclasses.replace(plan, fixture=work.fixture, warmup=work.warmup, steps=work.steps)
    cap = [] if work.bucket_cap_mb is None else ["--bucket-cap-mb", repr(work.bucket_cap_mb)]
    probe = ["--allreduce-probe", "3", "--nosync-steps", str(plan.nosync_steps)]
    commands = {
        "reference": plan.reference("replicate", *cap, *probe),
        "ddp": plan.pytorch("ddp", *cap, *probe),
        "reference_compute": plan.reference("none"),
        "pytorch_compute": plan.pytorch("none"),
    }
    runs: dict[str, list[Launch]] = {side: [] for side in commands}
    order = list(commands)
    for round_index in range(plan.rounds):
        for side in order[round_index % len(order):] + order[:round_index % len(order)]:
            launched = plan.run(SIDES[side], commands[side], ws)
            runs[side].append(launched)
            print(f"  {work.fixture} ws {ws} round {round_index + 1}/{plan.rounds}: {launched.label:<23} "
                  f"median step {median(launched.per_step()):9.2f} ms", flush=True)
    return runs


def side_figures(runs: list[Launch]) -> dict[str, Any]:
    steps = [t for run in runs for t in run.per_step()]
    return {
        "median_step_ms": median(steps), "min_step_ms": min(steps), "max_step_ms": max(steps),
        "timed_steps": len(steps),
        "phase_ms": {p: median([t for run in runs for t in run.per_step("phase_ms", p)]) for p in PHASES},
        "nosync_median_step_ms": median([t for run in runs for t in run.per_step("nosync_step_ms")]),
        "allreduce_median_ms": median([t for run in runs for t in run.per_step("allreduce_ms")]),
        "minor_faults_per_step": max(r["minor_faults_per_step"] for run in runs for r in run.ranks),
        "step_ms": steps,
    }


def summarize(plan: Plan, work: Workload, ws: int, runs: dict[str, list[Launch]]) -> dict[str, Any]:
    sides = {side: side_figures(launches) for side, launches in runs.items()}
    step = lambda side: sides[side]["median_step_ms"]  # noqa: E731
    ref_sync = step("reference") - step("reference_compute")
    ddp_sync = step("ddp") - step("pytorch_compute")
    step_ratio = ratio(step("reference"), step("ddp"))
    compute_ratio = ratio(step("reference_compute"), step("pytorch_compute"))
    targets = {
        "step": {"ratio": step_ratio, "limit": work.step_target,
                 "target_met": step_ratio is not None and step_ratio <= work.step_target},
        "compute_only": {"ratio": compute_ratio, "limit": COMPUTE_TARGET,
                         "target_met": compute_ratio is not None and compute_ratio <= COMPUTE_TARGET},
        # A difference of medians: noise can make one negative, so the target
        # compares the overheads themselves; the ratio exists when DDP's is positive.
        "sync_overhead": {"reference_ms": ref_sync, "ddp_ms": ddp_sync, "ratio": ratio(ref_sync, ddp_sync),
                          "limit": COMPUTE_TARGET, "target_met": ref_sync <= ddp_sync},
    }
    ref0, ddp0 = runs["reference"][0], runs["ddp"][0]
    buckets = {"reference": ref0.ranks[0].get("buckets"), "ddp": ddp0.ranks[0].get("buckets")}
    sums_text, sums_equal = param_sums(ref0, ddp0)
    return {
        "fixture": work.fixture, "kind": work.kind, "world_size": ws, "bucket_cap_mb": work.bucket_cap_mb,
        "warmup": work.warmup, "steps": work.steps, "rounds": plan.rounds,
        "model": describe_model(ref0.ranks[0]), "torch": {"reference": ref0.ranks[0]["torch"],
                                                           "pytorch": ddp0.ranks[0]["torch"]},
        "sides": sides, "targets": targets,
        "target_met": all(t["target_met"] for t in targets.values()),
        "param_sums_equal": sums_equal, "param_sums": sums_text,
        "losses_max_rel_diff": losses_rel_diff(ref0, ddp0),
        "losses": describe_losses(ref0, ddp0),
        "compute_losses_max_rel_diff": losses_rel_diff(runs["reference_compute"][0], runs["pytorch_compute"][0]),
        "buckets": buckets, "buckets_equal": buckets["reference"] == buckets["ddp"],
        "full_param_bytes": ref0.ranks[0]["full_param_bytes"],
    }


def print_workload(plan: Plan, row: dict[str, Any]) -> None:
    cap = ("DDP's default (25 MiB, first bucket 1 MiB)" if row["bucket_cap_mb"] is None
           else f"{row['bucket_cap_mb']:g} MiB")
    print()
    print(f"== {row['fixture']} ({row['kind']}), world size {row['world_size']}: {row['model']}; "
          f"bucket cap {cap}, both sides; {row['rounds']} round(s) x ({row['warmup']} warm-up + {row['steps']} "
          f"timed steps) per side")
    print(f"   reference: C++ on LibTorch {row['torch']['reference']}; PyTorch {row['torch']['pytorch']}, Python; "
          "compute only: no replicate on the reference's side, a plain nn.Module on PyTorch's")
    header = f"{'':<24}{'median':>9}{'min':>9}{'max':>9} |{'forward':>9}{'backward':>9}{'optim':>8}{'zero':>7}"
    if plan.nosync_steps:
        header += f" |{'no-sync':>9}"
    print(header + f" |{'faults':>7}   (ms; faults: minor page faults per step, worst rank)")
    for side, label in SIDES.items():
        e = row["sides"][side]
        p = e["phase_ms"]
        line = (f"{label:<24}{e['median_step_ms']:9.2f}{e['min_step_ms']:9.2f}{e['max_step_ms']:9.2f} |"
                f"{p['forward']:9.2f}{p['backward']:9.2f}{p['optimizer']:8.2f}{p['zero_grad']:7.2f}")
        if plan.nosync_steps:
            line += f" |{e['nosync_median_step_ms']:9.2f}" if side in ("reference", "ddp") else f" |{'':>9}"
        print(line + f" |{e['minor_faults_per_step']:7.0f}")
    t = row["targets"]
    s = t["sync_overhead"]
    print(f"step ratio reference/DDP       : {fmt(t['step']['ratio'])} (target <= {t['step']['limit']:.2f}: "
          f"{met(t['step']['target_met'])})")
    print(f"compute-only ratio             : {fmt(t['compute_only']['ratio'])} (target <= "
          f"{t['compute_only']['limit']:.2f}: {met(t['compute_only']['target_met'])})")
    print(f"sync overhead (step - compute) : reference {s['reference_ms']:.2f} ms, DDP {s['ddp_ms']:.2f} ms, ratio "
          f"{fmt(s['ratio'])} (target: reference's <= DDP's: {met(s['target_met'])})")
    bare = [row["sides"][side]["allreduce_median_ms"] for side in ("reference", "ddp")]
    print(f"bare all-reduce                : {row['full_param_bytes']:,} bytes in one tensor: reference "
          f"{bare[0]:.2f} ms, DDP side {bare[1]:.2f} ms")
    describe = lambda b: " | ".join(" ".join(map(str, bucket)) for bucket in b) if b else "?"  # noqa: E731
    buckets = row["buckets"]
    print(f"buckets, all-reduce order      : {len(buckets['reference'] or [])}: reference "
          f"{describe(buckets['reference'])}; "
          f"DDP {describe(buckets['ddp'])}{'' if row['buckets_equal'] else ' (DIFFERENT)'}")
    print(f"same model                     : {row['param_sums']}; {row['losses']}; compute-only losses "
          f"within {row['compute_losses_max_rel_diff']:.1e}")


def print_summary(rows: list[dict[str, Any]]) -> None:
    print()
    print("== summary: reference / PyTorch (each a ratio of medians measured in this run; target, met?)")
    print(f"{'fixture':<20}{'kind':<16}{'world':>5} | {'step':>6} {'target':<16}| {'compute':>7} {'target':<16}| "
          f"{'sync overhead ms ref / DDP':>27} {'ratio':>6} {'target':<17}| same model")
    for row in rows:
        t = row["targets"]
        s = t["sync_overhead"]
        same = row["param_sums_equal"] and row["buckets_equal"] and row["losses_max_rel_diff"] < 1e-5
        print(f"{row['fixture']:<20}{row['kind']:<16}{row['world_size']:>5} | {fmt(t['step']['ratio']):>6} "
              f"{'<= ' + format(t['step']['limit'], '.2f') + ' ' + met(t['step']['target_met']):<16}| "
              f"{fmt(t['compute_only']['ratio']):>7} "
              f"{'<= ' + format(t['compute_only']['limit'], '.2f') + ' ' + met(t['compute_only']['target_met']):<16}| "
              f"{s['reference_ms']:>12.2f} / {s['ddp_ms']:<12.2f} {fmt(s['ratio']):>6} "
              f"{'ref<=DDP ' + met(s['target_met']):<17}| "
              f"{'yes' if same else 'NO'}")
    count = sum(t["target_met"] for row in rows for t in row["targets"].values())
    total = sum(len(row["targets"]) for row in rows)
    print(f"targets met: {count} of {total}")


def bench(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    world_sizes = args.world_sizes or ([2] if args.smoke else [2, 4])
    chosen = workloads(args)
    print(f"ccts bench replicate: {load_note()}", flush=True)
    print(f"setup    : Gloo over loopback, {plan.threads} thread(s) per rank on both sides; per fixture and world "
          f"size, {plan.rounds} round(s) of each side, sides interleaved; a step's time is its slowest rank's; MSE "
          f"loss, SGD lr {plan.lr}; {plan.describe_malloc()}", flush=True)
    rows = []
    for work in chosen:
        for ws in world_sizes:
            rows.append(summarize(plan, work, ws, run_workload(plan, work, ws)))
    for row in rows:
        print_workload(plan, row)
    print_summary(rows)
    return {"verb": "replicate", "threads": plan.threads, "rounds": plan.rounds, "malloc": plan.malloc,
            "world_sizes": world_sizes,
            "fixtures": [w.fixture for w in chosen], "runs": rows,
            "target_met": all(row["target_met"] for row in rows)}
