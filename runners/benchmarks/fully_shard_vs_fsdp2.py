"""`./ccts bench fully_shard`: the reference's fully_shard (ccts-bench, C++)
against PyTorch's FSDP2 (torch.distributed.fsdp.fully_shard, from
pytorch_baseline.py) at each world size: the same fixture values, the same
wrapping (each Linear, then the root), Gloo on CPU. Step time, the peak RSS of
one step (both sides measured the same way), and the per-rank parameter bytes
against the shard rule."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .ranks import (Launch, Plan, describe_losses, describe_model, fmt, load_note, losses_rel_diff, median, met, mib,
                    ratio)

PHASES = ("forward", "backward", "optimizer")
STEP_TARGET = 0.80    # reference / FSDP2, median step time
MEMORY_TARGET = 1.00  # reference / FSDP2, the worst rank's peak of one step
# Losses of the two sides may differ in the last bits: the collectives sum
# in different orders at more than two ranks.
LOSS_TOLERANCE = 1e-5


def run_world_size(plan: Plan, ws: int) -> dict[str, list[Launch]]:
    """Timing runs of both sides, interleaved with the order alternating; one
    run of each side's compute alone (no wrapper), which tells what the
    engine and its collectives add; then one short memory run each (--memory
    mmaps large blocks for the whole run, which would slow the timed steps)."""
    runs: dict[str, list[Launch]] = {"reference": [], "fsdp2": [], "reference_compute": [], "pytorch_compute": [],
                                     "reference_memory": [], "fsdp2_memory": []}
    commands = {"reference": ("reference fully_shard (C++)", plan.reference("fully_shard")),
                "fsdp2": ("PyTorch FSDP2 (Python)", plan.pytorch("fully_shard"))}
    compute = {"reference_compute": ("reference compute only", plan.reference("none")),
               "pytorch_compute": ("PyTorch compute only", plan.pytorch("none"))}
    for round_index in range(plan.rounds):
        for side in (["reference", "fsdp2"] if round_index % 2 == 0 else ["fsdp2", "reference"]):
            label, command = commands[side]
            launched = plan.run(label, command, ws)
            runs[side].append(launched)
            print(f"  ws {ws} round {round_index + 1}/{plan.rounds}: {label:<28} median step "
                  f"{median(launched.per_step()):9.2f} ms", flush=True)
    for side, (label, command) in compute.items():
        launched = plan.run(label, command, ws)
        runs[side].append(launched)
        print(f"  ws {ws}: {label:<28} median step {median(launched.per_step()):9.2f} ms", flush=True)
    memory_plan = dataclasses.replace(plan, warmup=1, steps=1)
    runs["reference_memory"].append(memory_plan.run("reference fully_shard memory",
                                                    memory_plan.reference("fully_shard", "--memory"), ws))
    runs["fsdp2_memory"].append(memory_plan.run("PyTorch FSDP2 memory", memory_plan.pytorch("fully_shard", "--memory"),
                                                ws))
    return runs


def side_figures(timing: list[Launch], memory: Launch) -> dict[str, Any]:
    steps = [t for run in timing for t in run.per_step()]
    first = timing[0]
    peak = lambda key: mib(max(r["memory"][key] for r in memory.ranks))  # noqa: E731
    return {
        "median_step_ms": median(steps), "min_step_ms": min(steps), "max_step_ms": max(steps),
        "timed_steps": len(steps),
        "phase_ms": {p: median([t for run in timing for t in run.per_step("phase_ms", p)]) for p in PHASES},
        "peak_step_mib": peak("peak_step_bytes"), "peak_forward_mib": peak("peak_forward_bytes"),
        "peak_backward_mib": peak("peak_backward_bytes"),
        "hwm_reset": all(r["memory"]["hwm_reset"] for r in memory.ranks),
        # Per rank: the bytes of the parameters' storages (a padded shard
        # whole), after fully_shard and after the timed steps; the local
        # shards alone (DTensor.to_local(), torch.chunk's rows).
        "param_bytes": [r["param_bytes"] for r in first.ranks],
        "param_bytes_after_steps": [r["param_bytes_after_steps"] for r in first.ranks],
        "local_shard_bytes": [r["local_shard_bytes"] for r in first.ranks],
        "step_ms": steps,
    }


def compute_figures(run: Launch) -> dict[str, Any]:
    return {"median_step_ms": median(run.per_step()),
            "phase_ms": {p: median(run.per_step("phase_ms", p)) for p in PHASES}}


def summarize(ws: int, runs: dict[str, list[Launch]]) -> dict[str, Any]:
    ref = side_figures(runs["reference"], runs["reference_memory"][0])
    fsdp2 = side_figures(runs["fsdp2"], runs["fsdp2_memory"][0])
    # What each engine adds to its compute: collectives, copies, hooks.
    for figures, compute in ((ref, runs["reference_compute"][0]), (fsdp2, runs["pytorch_compute"][0])):
        figures["compute_only"] = compute_figures(compute)
        figures["engine_overhead_ms"] = figures["median_step_ms"] - figures["compute_only"]["median_step_ms"]
    first = runs["reference"][0].ranks[0]
    rule = first["shard_rule_bytes"]
    step_ratio = ratio(ref["median_step_ms"], fsdp2["median_step_ms"])
    memory_ratio = ratio(ref["peak_step_mib"], fsdp2["peak_step_mib"])
    exact = all(b == rule for b in ref["param_bytes"] + ref["param_bytes_after_steps"])
    loss_diff = losses_rel_diff(runs["reference"][0], runs["fsdp2"][0])
    targets = {
        "step": {"ratio": step_ratio, "limit": STEP_TARGET,
                 "target_met": step_ratio is not None and step_ratio <= STEP_TARGET},
        "peak_memory": {"ratio": memory_ratio, "limit": MEMORY_TARGET,
                        "target_met": memory_ratio is not None and memory_ratio <= MEMORY_TARGET},
        "param_bytes": {"shard_rule_bytes": rule, "target_met": exact},
        "same_model": {"losses_max_rel_diff": loss_diff, "limit": LOSS_TOLERANCE,
                       "target_met": loss_diff <= LOSS_TOLERANCE},
    }
    return {
        "world_size": ws, "model": describe_model(first),
        "torch": {"reference": first["torch"], "pytorch": runs["fsdp2"][0].ranks[0]["torch"]},
        "full_param_bytes": first["full_param_bytes"], "shard_rule_bytes": rule,
        "rule_fraction": rule / first["full_param_bytes"],
        "sides": {"reference": ref, "fsdp2": fsdp2}, "targets": targets,
        "target_met": all(t["target_met"] for t in targets.values()),
        "losses": describe_losses(runs["reference"][0], runs["fsdp2"][0]),
        "compute_ratio": ratio(ref["compute_only"]["median_step_ms"], fsdp2["compute_only"]["median_step_ms"]),
        "engine_overhead_ratio": ratio(ref["engine_overhead_ms"], fsdp2["engine_overhead_ms"]),
        # Both sides follow torch.chunk: the same local shards on every rank.
        "local_shards_equal": ref["local_shard_bytes"] == fsdp2["local_shard_bytes"],
    }


def print_tables(plan: Plan, rows: list[dict[str, Any]]) -> None:
    first = rows[0]
    print()
    print(f"model    : {first['model']}; MSE loss, SGD lr {plan.lr}")
    print(f"setup    : fully_shard on every Linear, then the root, on both sides; Gloo over loopback, CPU; "
          f"{plan.threads} thread(s) per rank; {plan.rounds} round(s) x ({plan.warmup} warm-up + {plan.steps} timed "
          f"steps) per side, sides interleaved; a step's time is its slowest rank's; {plan.describe_malloc()}")
    print(f"sides    : reference LibTorch {first['torch']['reference']}; PyTorch {first['torch']['pytorch']}'s FSDP2 "
          f"on init_device_mesh('cpu', (world,))")
    print("memory   : separate runs on both sides with every block >= 64 KiB mmapped (so the RSS follows what is "
          "alive); after 1 warm-up + 1 step, zero_grad(set_to_none) and malloc_trim, one step's forward + backward + "
          "SGD: peak = VmHWM (reset through /proc/self/clear_refs) - VmRSS before it, the worst rank's")
    print()
    print(f"{'world':>5} | {'step ms: reference':>18}{'FSDP2':>9}{'ratio':>7}{'target':>17} | "
          f"{'peak MiB: reference':>19}{'FSDP2':>7}{'ratio':>7}{'target':>17}")
    for row in rows:
        r, f, t = row["sides"]["reference"], row["sides"]["fsdp2"], row["targets"]
        print(f"{row['world_size']:>5} | {r['median_step_ms']:>18.2f}{f['median_step_ms']:>9.2f}"
              f"{fmt(t['step']['ratio']):>7}{f'<= {STEP_TARGET:.2f} ' + met(t['step']['target_met']):>17} | "
              f"{r['peak_step_mib']:>19.1f}{f['peak_step_mib']:>7.1f}{fmt(t['peak_memory']['ratio']):>7}"
              f"{f'<= {MEMORY_TARGET:.2f} ' + met(t['peak_memory']['target_met']):>17}")
    print()
    print(f"{'world':>5} | phase ms (median): reference {'fwd':>8}{'bwd':>9}{'optim':>7} | FSDP2 {'fwd':>8}{'bwd':>9}"
          f"{'optim':>7} | peak MiB by end of fwd, bwd: reference; FSDP2")
    for row in rows:
        r, f = row["sides"]["reference"], row["sides"]["fsdp2"]
        rp, fp = r["phase_ms"], f["phase_ms"]
        print(f"{row['world_size']:>5} | {'':<28}{rp['forward']:>8.2f}{rp['backward']:>9.2f}{rp['optimizer']:>7.2f} | "
              f"{'':<6}{fp['forward']:>8.2f}{fp['backward']:>9.2f}{fp['optimizer']:>7.2f} | "
              f"{r['peak_forward_mib']:.1f}, {r['peak_backward_mib']:.1f}; "
              f"{f['peak_forward_mib']:.1f}, {f['peak_backward_mib']:.1f}")
    print()
    print(f"{'world':>5} | profile, ms (median): compute only (no wrapper) fwd / bwd / optim, and engine overhead "
          "= step - compute only (collectives, copies, hooks)")
    for row in rows:
        parts = []
        for side, label in (("reference", "reference"), ("fsdp2", "FSDP2")):
            c = row["sides"][side]["compute_only"]
            cp = c["phase_ms"]
            parts.append(f"{label} compute {c['median_step_ms']:.2f} ({cp['forward']:.2f} / {cp['backward']:.2f} / "
                         f"{cp['optimizer']:.2f}), overhead {row['sides'][side]['engine_overhead_ms']:.2f}")
        print(f"{row['world_size']:>5} | {'; '.join(parts)}; ratios compute {fmt(row['compute_ratio'])}, "
              f"overhead {fmt(row['engine_overhead_ratio'])}")
    print()
    print(f"{'world':>5} | {'shard rule':>12}{'fraction':>9} | {'param bytes/rank: reference':>27}{'exact':>6} | "
          f"{'FSDP2 storage':>14} | local shard bytes per rank (reference = FSDP2?)")
    for row in rows:
        r, f = row["sides"]["reference"], row["sides"]["fsdp2"]
        print(f"{row['world_size']:>5} | {row['shard_rule_bytes']:>12,}{row['rule_fraction']:>9.4f} | "
              f"{max(r['param_bytes']):>27,}{'yes' if row['targets']['param_bytes']['target_met'] else 'NO':>6} | "
              f"{max(f['param_bytes']):>14,} | {', '.join(f'{b:,}' for b in r['local_shard_bytes'])} "
              f"({'equal' if row['local_shards_equal'] else 'DIFFERENT: FSDP2 ' + str(f['local_shard_bytes'])})")
    print()
    for row in rows:
        print(f"same model, ws {row['world_size']}: {row['losses']}")
    print()
    print(f"targets  : step time <= {STEP_TARGET:.2f} x FSDP2's; peak memory of a step <= {MEMORY_TARGET:.2f} x "
          "FSDP2's; per-rank parameter bytes == shard rule (sum of ceil(rows/N)*cols*element size, the padded "
          "shards) before and after training; "
          f"rank 0's losses within {LOSS_TOLERANCE:g} of FSDP2's")
    for row in rows:
        t = row["targets"]
        print(f"  ws {row['world_size']}: step {fmt(t['step']['ratio'])} {met(t['step']['target_met'])}; peak memory "
              f"{fmt(t['peak_memory']['ratio'])} {met(t['peak_memory']['target_met'])}; parameter bytes "
              f"{met(t['param_bytes']['target_met'])}; same model {met(t['same_model']['target_met'])}")
    count = sum(t["target_met"] for row in rows for t in row["targets"].values())
    print(f"targets met: {count} of {sum(len(row['targets']) for row in rows)}")
    if not all(row["sides"][side]["hwm_reset"] for row in rows for side in ("reference", "fsdp2")):
        print("warning  : /proc/self/clear_refs could not be written; peaks are since process start")


def bench(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    world_sizes = args.world_sizes or ([1, 2] if args.smoke else [2, 4])
    print(f"ccts bench fully_shard: {load_note()}", flush=True)
    rows = [summarize(ws, run_world_size(plan, ws)) for ws in world_sizes]
    print_tables(plan, rows)
    return {"verb": "fully_shard", "fixture": plan.fixture, "threads": plan.threads, "warmup": plan.warmup,
            "steps": plan.steps, "rounds": plan.rounds, "malloc": plan.malloc, "world_sizes": rows,
            "target_met": all(row["target_met"] for row in rows)}
