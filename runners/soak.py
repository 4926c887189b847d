"""./ccts soak: the suite run N times in shuffled order, every non-pass counted.

    ./ccts soak --runs 50 [run options]        (default: the reference adapter)
    ./ccts soak --runs 10 --adapter '.venv/bin/python -m runners.adapters.pytorch' --timeout 180

Each run is a fresh `./ccts run --shuffle --seed <i>` process (out/soak/run-<i>/),
as a user or CI starts it. After each, three things are counted: the results
that did not pass (fail, error, crash, timeout, xpass), results lost (a case
x world size the first run reported and this one did not), and orphans
(processes still alive after the runner exited that carry the run's own mark,
CCTS_SOAK_RUN, which the runner hands down to every rank with its environment). A result whose outcome differs between runs is
unstable. soak.json and soak.md in --out say it all; the exit code is 0 only
when every count is zero.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from ccts_common import outcomes

from .suite import ROOT

NON_PASS = outcomes.FAILING + ("xpass",)
# Inherited by the runner and every process below it; SESSION_MARK is the
# runner's own and names one session, not one run.
RUN_MARK = "CCTS_SOAK_RUN"


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="ccts soak", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=10, help="how many runs (default 10)")
    p.add_argument("--out", default="out/soak", help="folder of the runs and the tally (default out/soak/)")
    p.add_argument("--first-seed", type=int, default=1, help="seed of the first run's --shuffle (default 1)")
    options, run_args = p.parse_known_args(argv)
    if options.runs < 1:
        p.error("--runs must be at least 1")
    for own in ("--shuffle", "--seed", "--out"):
        if any(a == own or a.startswith(own + "=") for a in run_args):
            p.error(f"{own} is soak's to set")
    return options, run_args


def marked_processes(value: str) -> list[int]:
    """Live processes (not zombies) whose environment holds RUN_MARK=value."""
    needle = f"{RUN_MARK}={value}".encode()
    found = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except (OSError, IndexError):
            continue
    return found


def one_run(index: int, seed: int, run_args: list[str], out: Path) -> dict:
    folder = out / f"run-{index}"
    command = [sys.executable, "-m", "runners", "run", "--shuffle", "--seed", str(seed), "--out", str(folder),
               "-q", *run_args]
    mark = f"{uuid.uuid4().hex}-{index}"
    env = dict(os.environ, **{RUN_MARK: mark})
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.monotonic()
    code = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True).returncode
    seconds = time.monotonic() - start
    orphans = marked_processes(mark)
    try:
        results = json.loads((folder / "report.json").read_text())["results"]
    except (OSError, ValueError, KeyError) as e:
        results = None
        print(f"ccts soak: run {index}: no report ({e})", file=sys.stderr)
    return {"run": index, "seed": seed, "exit_code": code, "seconds": round(seconds, 1), "orphans": orphans,
            "outcomes": {f"{r['case']}@{r['world_size']}": r["outcome"] for r in results or []},
            "report": results is not None}


def tally(runs: list[dict]) -> dict:
    first = set(runs[0]["outcomes"])
    every = set().union(*(r["outcomes"] for r in runs))
    by_result: dict[str, Counter] = defaultdict(Counter)
    for r in runs:
        for key in every:
            by_result[key][r["outcomes"].get(key, "lost")] += 1
    return {
        "runs": len(runs),
        "results_per_run": [len(r["outcomes"]) for r in runs],
        "outcomes": dict(sum((Counter(r["outcomes"].values()) for r in runs), Counter())),
        "non_pass": {k: dict(c) for k, c in sorted(by_result.items()) if any(o in NON_PASS for o in c)},
        "unstable": {k: dict(c) for k, c in sorted(by_result.items()) if len(c) > 1},
        "lost": sum(len(first - set(r["outcomes"])) for r in runs) + sum(not r["report"] for r in runs),
        "orphans": sum(len(r["orphans"]) for r in runs),
        "seconds": round(sum(r["seconds"] for r in runs), 1),
    }


def markdown(summary: dict, runs: list[dict], run_args: list[str]) -> str:
    lines = [f"# Soak: {summary['runs']} shuffled runs", "",
             f"`./ccts run --shuffle {' '.join(run_args)}`, {summary['seconds']} s in all", "",
             "| count | value |", "|---|---|",
             f"| results per run | {min(summary['results_per_run'])}..{max(summary['results_per_run'])} |",
             *(f"| {o} | {n} |" for o, n in sorted(summary["outcomes"].items())),
             f"| non-pass results (distinct) | {len(summary['non_pass'])} |",
             f"| unstable results | {len(summary['unstable'])} |",
             f"| results lost | {summary['lost']} |", f"| orphan processes | {summary['orphans']} |", ""]
    if summary["unstable"] or summary["non_pass"]:
        lines += ["| result | outcomes over the runs |", "|---|---|"]
        for key in sorted(set(summary["unstable"]) | set(summary["non_pass"])):
            counts = summary["unstable"].get(key) or summary["non_pass"][key]
            lines.append(f"| `{key}` | {', '.join(f'{o} {n}' for o, n in sorted(counts.items()))} |")
        lines.append("")
    lines += ["| run | seed | exit | seconds | orphans |", "|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['seed']} | {r['exit_code']} | {r['seconds']} | {len(r['orphans'])} |" for r in runs]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    options, run_args = parse(argv)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(options.runs):
        run = one_run(i + 1, options.first_seed + i, run_args, out)
        runs.append(run)
        bad = sum(o in NON_PASS for o in run["outcomes"].values())
        print(f"ccts soak: run {run['run']}/{options.runs} (seed {run['seed']}): {len(run['outcomes'])} results, "
              f"{bad} non-pass, {len(run['orphans'])} orphans, {run['seconds']} s", flush=True)
    summary = tally(runs)
    (out / "soak.json").write_text(json.dumps({"summary": summary, "runs": runs, "run_args": run_args}, indent=1) + "\n")
    (out / "soak.md").write_text(markdown(summary, runs, run_args))
    print(markdown(summary, runs, run_args), end="")
    clean = not (summary["non_pass"] or summary["unstable"] or summary["lost"] or summary["orphans"])
    return 0 if clean else 1
