"""`bench checkpoint`: what activation checkpointing saves, the reference's
ccts::nn::checkpoint (reference/bench/ccts-bench-checkpoint.cpp) beside
PyTorch's torch.utils.checkpoint(use_reentrant=False)
(runners/benchmarks/pytorch_checkpoint.py), on the same model, values and
threads: each side runs the plain and the checkpointed fixture, each in a
fresh process, and the ratio checkpointed/plain of one step's peak memory
over the resting state is the figure (target <= 0.6, as PyTorch).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from .ranks import BenchError, bench_binary, fixtures_dir, launch, load_note, median, mib, write_summary

TARGET = 0.6
PAIRS = {False: ("BenchDeep", "BenchDeepCheckpointed"), True: ("BenchDeepSmoke", "BenchDeepSmokeCheckpointed")}


def binary() -> Path:
    return bench_binary("ccts-bench-checkpoint")


def measure(command: list[str], threads: int, timeout: float) -> dict[str, Any]:
    """One process's JSON line (a rank group of one; the programs ignore its environment)."""
    return launch(Path(command[0]).name, command, 1, threads, timeout).ranks[0]


def main(args: argparse.Namespace) -> int:
    warmup = 1 if args.warmup is None else args.warmup
    steps = (2 if args.smoke else 5) if args.steps is None else args.steps
    plain, checkpointed = PAIRS[args.smoke]
    if not binary().exists():
        print(f"error: {binary()} is not built (./ccts bench checkpoint builds it)")
        return 1
    common = ["--fixtures", str(fixtures_dir(args)), "--warmup", str(warmup), "--steps", str(steps),
              "--threads", str(args.threads)]
    commands = {"reference": [str(binary())],
                "pytorch": [args.ddp_python, "-m", "runners.benchmarks.pytorch_checkpoint"]}
    print(f"ccts bench checkpoint: {load_note()}", flush=True)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for side, command in commands.items():
            results[side] = {mode: measure([*command, *common, "--fixture", fixture], args.threads, args.timeout)
                             for mode, fixture in (("plain", plain), ("checkpointed", checkpointed))}
    except BenchError as e:
        print(f"error: {e}")
        return 1

    ref = results["reference"]["plain"]
    print()
    print(f"model    : {plain} / {checkpointed} (fixtures/bench_checkpoint.yaml), {ref['param_bytes']:,} parameter "
          f"bytes, batch {ref['input_shape']}; forward + MSE loss + backward, no optimizer; {args.threads} thread(s)")
    print("memory   : a fresh process per row, every block >= 64 KiB mmapped (the RSS follows what is alive); after "
          f"{warmup} warm-up step(s), gradients cleared and malloc_trim: kept = RSS at the end of forward - RSS "
          "before; peak = VmHWM (reset through /proc/self/clear_refs) at the end of backward - RSS before")
    print()
    print(f"{'side':<28}{'mode':<14}{'kept MiB':>10}{'peak MiB':>10}{'step ms':>10}{'fwd':>9}{'bwd':>9}"
          f"{'loss':>14}{'grad sum':>16}")
    summary: dict[str, Any] = {"plain": plain, "checkpointed": checkpointed, "threads": args.threads,
                               "warmup": warmup, "steps": steps, "target": TARGET, "sides": {}}
    labels = {"reference": f"reference (LibTorch {ref['torch']})",
              "pytorch": f"PyTorch {results['pytorch']['plain']['torch']}"}
    for side, modes in results.items():
        for mode, r in modes.items():
            print(f"{labels[side]:<28}{mode:<14}{mib(r['kept_forward_bytes']):>10.1f}{mib(r['peak_step_bytes']):>10.1f}"
                  f"{median(r['step_ms']):>10.2f}{median(r['forward_ms']):>9.2f}{median(r['backward_ms']):>9.2f}"
                  f"{r['losses'][0]:>14.7g}{r['grad_sum']:>16.7g}")
        p, c = modes["plain"], modes["checkpointed"]
        summary["sides"][side] = {
            "peak_ratio": c["peak_step_bytes"] / p["peak_step_bytes"],
            "kept_ratio": c["kept_forward_bytes"] / p["kept_forward_bytes"],
            "time_ratio": median(c["step_ms"]) / median(p["step_ms"]),
            "same_gradients": math.isclose(p["grad_sum"], c["grad_sum"], rel_tol=1e-5, abs_tol=1e-6)
            and p["losses"] == c["losses"],
            "runs": modes,
        }
    print()
    for side in results:
        s = summary["sides"][side]
        print(f"{labels[side]:<28}checkpointed/plain: peak {s['peak_ratio']:.3f}, kept after forward "
              f"{s['kept_ratio']:.3f}, step time {s['time_ratio']:.3f}; gradients and losses "
              f"{'the same' if s['same_gradients'] else 'DIFFER'}")
    pairs = zip(results["reference"]["plain"]["losses"], results["pytorch"]["plain"]["losses"])
    worst = max((abs(a - b) / max(abs(b), 1e-30) for a, b in pairs), default=0.0)
    summary["losses_max_rel_diff"] = worst
    print(f"same model          : reference and PyTorch losses within {worst:.1e} (relative)")
    met = summary["sides"]["reference"]["peak_ratio"] <= TARGET
    summary["target_met"] = met
    print(f"target              : reference checkpointed/plain peak <= {TARGET}: {'met' if met else 'NOT met'} "
          f"(PyTorch's: {summary['sides']['pytorch']['peak_ratio']:.3f})")
    if not all(r["hwm_reset"] for modes in results.values() for r in modes.values()):
        print("warning  : /proc/self/clear_refs could not be written; peaks are since process start")
    write_summary(args, summary)
    return 0
