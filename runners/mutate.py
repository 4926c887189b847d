"""./ccts mutate: the suite against wrong implementations of PyTorch itself.

    ./ccts mutate                          every mutant of runners/mutants/pytorch.yaml
    ./ccts mutate --area replicate -k 'replicate.*broadcast*' --all-killers

Each mutant of the catalogue replaces one exact text of one file of the pinned
PyTorch's Python sources. The venv is never written: the mutated file goes to
a private overlay folder, and an import hook (sitecustomize.py there, first on
PYTHONPATH of the runner and so of every rank) loads that module from it
instead. The mutant's area then runs through the PyTorch adapter at the
mutant's world sizes; a result that passed in the clean run of that area and
does not pass now kills it. Per mutant: killed (by which cases), survived,
equivalent (the catalogue says why), or unexercised (no rank imported the
module: a catalogue mistake, never counted as a kill), or import_error (the
mutated module does not import: not counted either). After each, the
original file's SHA-256 is checked to be unchanged.

Output in --out (default out/mutate/): mutate.json and mutate.md, with the kill
rate per area and overall (killed / (killed + survived)). Exit 0 when every
rate reaches --min-kill-rate (default 0.95), 1 when one does not, 2 when the
catalogue is wrong (the message names its file, mutant and field).
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ccts_common import outcomes

from .suite import ROOT

CATALOGUE = ROOT / "runners" / "mutants" / "pytorch.yaml"
XFAIL = ROOT / "runners" / "adapters" / "pytorch" / "expected-failures.txt"
AREAS = ("contract", "replicate", "fully_shard", "mod_tracker")
DEFAULT_WORLD_SIZES = [1, 2]
# The import hook the overlay folder holds: CCTS_MUTATE_MODULES maps module
# names to mutated files; each load is logged to CCTS_MUTATE_LOG.
SITECUSTOMIZE = '''\
"""Written by runners/mutate.py: loads the mutated modules from this folder."""
import importlib.abc
import importlib.util
import json
import os
import sys

_MODULES = json.loads(os.environ.get("CCTS_MUTATE_MODULES", "{}"))


class _MutantFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        file = _MODULES.get(name)
        if file is None:
            return None
        log = os.environ.get("CCTS_MUTATE_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {name}\\n")
        return importlib.util.spec_from_file_location(name, file)


sys.meta_path.insert(0, _MutantFinder())
'''


class CatalogueError(Exception):
    pass


@dataclass
class Mutant:
    id: str
    area: str
    file: str
    find: str
    replace: str
    bug: str
    world_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_WORLD_SIZES))
    equivalent: str | None = None

    @property
    def module(self) -> str:
        return "torch." + self.file[:-len(".py")].replace("/", ".")


def torch_dir() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        raise CatalogueError("torch is not importable by this interpreter (./ccts setup makes .venv/)")
    return Path(spec.origin).parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_catalogue(path: Path, torch_root: Path) -> list[Mutant]:
    """The catalogue's mutants, each checked: its text occurs once, the result compiles."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise CatalogueError(f"{path}: {e}") from None
    entries = data.get("mutants") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"{path}: expected a mapping with a non-empty list 'mutants'")
    mutants, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: mutants[{i}]"
        if not isinstance(entry, dict):
            raise CatalogueError(f"{where}: expected a mapping")
        where = f"{path}: mutant {entry.get('id', f'#{i}')}"
        for key in ("id", "area", "file", "find", "replace", "bug"):
            if not isinstance(entry.get(key), str) or (key != "replace" and not entry[key]):
                raise CatalogueError(f"{where}: field {key}: expected a string")
        unknown = set(entry) - {"id", "area", "file", "find", "replace", "bug", "world_sizes", "equivalent"}
        if unknown:
            raise CatalogueError(f"{where}: unknown field {sorted(unknown)[0]}")
        if entry["id"] in seen:
            raise CatalogueError(f"{where}: field id: duplicate")
        seen.add(entry["id"])
        if entry["area"] not in AREAS:
            raise CatalogueError(f"{where}: field area: '{entry['area']}' is not one of {', '.join(AREAS)}")
        sizes = entry.get("world_sizes", DEFAULT_WORLD_SIZES)
        if not isinstance(sizes, list) or not sizes or not all(isinstance(n, int) and n >= 1 for n in sizes):
            raise CatalogueError(f"{where}: field world_sizes: expected a list of positive integers")
        if entry["file"].endswith("__init__.py") or not entry["file"].endswith(".py"):
            raise CatalogueError(f"{where}: field file: a module's .py file (not a package's __init__.py)")
        source_file = torch_root / entry["file"]
        try:
            text = source_file.read_text(encoding="utf-8")
        except OSError as e:
            raise CatalogueError(f"{where}: field file: {e}") from None
        count = text.count(entry["find"])
        if count != 1:
            raise CatalogueError(f"{where}: field find: occurs {count} times in {source_file}, not once")
        if entry["find"] == entry["replace"]:
            raise CatalogueError(f"{where}: field replace: the same as find")
        try:
            compile(text.replace(entry["find"], entry["replace"]), str(source_file), "exec")
        except SyntaxError as e:
            raise CatalogueError(f"{where}: field replace: the mutated file does not compile: {e}") from None
        mutants.append(Mutant(id=entry["id"], area=entry["area"], file=entry["file"], find=entry["find"],
                              replace=entry["replace"], bug=entry["bug"], world_sizes=sizes,
                              equivalent=entry.get("equivalent")))
    return mutants


@dataclass
class Options:
    out: Path
    adapter: str
    xfail: Path | None
    timeout: float
    all_killers: bool
    quiet: bool


def run_area(options: Options, area: str, sizes: list[int], out: Path, env: dict[str, str],
             exitfirst: bool) -> dict[str, str]:
    """{case@world_size: outcome} of one area's run through the adapter."""
    command = [sys.executable, "-m", "runners", "run", "--adapter", options.adapter, "--area", area,
               "--world-sizes", ",".join(map(str, sizes)), "--timeout", str(options.timeout),
               "--out", str(out), "-q"]
    if options.xfail:
        command += ["--xfail", str(options.xfail)]
    if exitfirst:
        command.append("-x")
    subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        results = json.loads((out / "report.json").read_text())["results"]
    except (OSError, ValueError, KeyError):
        return {}
    return {f"{r['case']}@{r['world_size']}": r["outcome"] for r in results}


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCTS_MUTATE_")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def try_mutant(mutant: Mutant, torch_root: Path, baseline: dict[str, str], options: Options) -> dict[str, Any]:
    original = torch_root / mutant.file
    before = sha256(original)
    overlay = Path(tempfile.mkdtemp(prefix="ccts-mutant-"))
    start = time.monotonic()
    try:
        mutated = overlay / "modules" / mutant.file
        mutated.parent.mkdir(parents=True)
        mutated.write_text(original.read_text(encoding="utf-8").replace(mutant.find, mutant.replace),
                           encoding="utf-8")
        (overlay / "sitecustomize.py").write_text(SITECUSTOMIZE)
        log = overlay / "loads.log"
        env = base_env()
        env["PYTHONPATH"] = str(overlay) + os.pathsep + env["PYTHONPATH"]
        env["CCTS_MUTATE_MODULES"] = json.dumps({mutant.module: str(mutated)})
        env["CCTS_MUTATE_LOG"] = str(log)
        # A mutant that breaks the import is no bug a port would ship: not counted.
        imported = subprocess.run([sys.executable, "-c", f"import {mutant.module}"], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
        if imported.returncode != 0:
            reason = (imported.stderr.strip().splitlines() or ["exit %d" % imported.returncode])[-1]
            return {"id": mutant.id, "area": mutant.area, "file": mutant.file, "bug": mutant.bug,
                    "world_sizes": mutant.world_sizes, "status": "import_error", "killed_by": [],
                    "equivalent": reason, "results": 0, "seconds": round(time.monotonic() - start, 1)}
        log.unlink(missing_ok=True)
        results = run_area(options, mutant.area, mutant.world_sizes, options.out / "runs" / mutant.id, env,
                           exitfirst=not options.all_killers)
        loaded = log.exists() and log.read_text().strip() != ""
    finally:
        shutil.rmtree(overlay, ignore_errors=True)
    if sha256(original) != before:
        raise CatalogueError(f"{original} changed during mutant {mutant.id}: the venv must never be written")
    killers = sorted(k for k, o in results.items() if baseline.get(k) == "pass" and o in outcomes.FAILING)
    if killers:
        status = "killed"
    elif not loaded:
        status = "unexercised"
    elif mutant.equivalent:
        status = "equivalent"
    else:
        status = "survived"
    return {"id": mutant.id, "area": mutant.area, "file": mutant.file, "bug": mutant.bug,
            "world_sizes": mutant.world_sizes, "status": status, "killed_by": killers,
            "equivalent": mutant.equivalent, "results": len(results),
            "seconds": round(time.monotonic() - start, 1)}


def rates(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for area in [*AREAS, "overall"]:
        mine = [r for r in rows if area == "overall" or r["area"] == area]
        if not mine:
            continue
        killed = sum(r["status"] == "killed" for r in mine)
        survived = sum(r["status"] == "survived" for r in mine)
        out[area] = {"mutants": len(mine), "killed": killed, "survived": survived,
                     "equivalent": sum(r["status"] == "equivalent" for r in mine),
                     "unexercised": sum(r["status"] == "unexercised" for r in mine),
                     "import_error": sum(r["status"] == "import_error" for r in mine),
                     "kill_rate": round(killed / (killed + survived), 4) if killed + survived else None}
    return out


def markdown(rows: list[dict[str, Any]], by_area: dict[str, dict[str, Any]], seconds: float) -> str:
    lines = [f"# Mutation testing of PyTorch: {len(rows)} mutants, {seconds:.0f} s", "",
             "| area | mutants | killed | survived | equivalent | unexercised | import error | kill rate |",
             "|---|---|---|---|---|---|---|---|"]
    for area, r in by_area.items():
        rate = "n/a" if r["kill_rate"] is None else f"{100 * r['kill_rate']:.1f}%"
        lines.append(f"| {area} | {r['mutants']} | {r['killed']} | {r['survived']} | {r['equivalent']} | "
                     f"{r['unexercised']} | {r['import_error']} | {rate} |")
    lines += ["", "| mutant | status | bug | killed by / why equivalent |", "|---|---|---|---|"]
    for r in rows:
        detail = ", ".join(f"`{k}`" for k in r["killed_by"][:3]) or (r["equivalent"] or "")
        lines.append(f"| `{r['id']}` | {r['status']} | {r['bug']} | {detail} |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ccts mutate", description=__doc__.split("\n")[0])
    p.add_argument("--catalogue", default=str(CATALOGUE), help="mutants (default runners/mutants/pytorch.yaml)")
    p.add_argument("--area", action="append", choices=AREAS, help="only this area's mutants (repeatable)")
    p.add_argument("-k", action="append", metavar="PATTERN", help="mutant id glob (repeatable)")
    p.add_argument("--adapter", default=f"{sys.executable} -m runners.adapters.pytorch",
                   help="the PyTorch adapter command (default: this interpreter's)")
    p.add_argument("--xfail", default=str(XFAIL), help="the adapter's expected failures (default: the PyTorch adapter's)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per case (default 180)")
    p.add_argument("--all-killers", action="store_true", help="run every case (default: stop at the first kill)")
    p.add_argument("--min-kill-rate", type=float, default=0.95, help="exit 1 below this, per area (default 0.95)")
    p.add_argument("--out", default="out/mutate", help="default out/mutate/")
    p.add_argument("-q", "--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        torch_root = torch_dir()
        mutants = load_catalogue(Path(args.catalogue), torch_root)
    except CatalogueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mutants = [m for m in mutants if (not args.area or m.area in args.area)
               and (not args.k or any(fnmatch.fnmatchcase(m.id, k) for k in args.k))]
    if not mutants:
        print("error: no mutant matches the selection (--area, -k)", file=sys.stderr)
        return 2
    options = Options(out=Path(args.out), adapter=args.adapter, xfail=Path(args.xfail) if args.xfail else None,
                      timeout=args.timeout, all_killers=args.all_killers, quiet=args.quiet)
    options.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    baselines: dict[str, dict[str, str]] = {}
    for area in sorted({m.area for m in mutants}):
        sizes = sorted({n for m in mutants if m.area == area for n in m.world_sizes})
        baselines[area] = run_area(options, area, sizes, options.out / "runs" / f"clean-{area}", base_env(),
                                   exitfirst=False)
        passed = sum(o == "pass" for o in baselines[area].values())
        print(f"ccts mutate: clean {area} at {sizes}: {passed} of {len(baselines[area])} results pass", flush=True)
        if not passed:
            print(f"error: the unmutated PyTorch passes nothing in {area}: is the adapter working?", file=sys.stderr)
            return 2
    rows = []
    try:
        for i, mutant in enumerate(mutants, 1):
            row = try_mutant(mutant, torch_root, baselines[mutant.area], options)
            rows.append(row)
            if not args.quiet:
                print(f"ccts mutate: [{i}/{len(mutants)}] {row['status']:<11} {mutant.id} ({row['seconds']} s)"
                      + (f" by {row['killed_by'][0]}" if row["killed_by"] else ""), flush=True)
    except CatalogueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        by_area = rates(rows)
        seconds = time.monotonic() - start
        (options.out / "mutate.json").write_text(json.dumps(
            {"catalogue": str(args.catalogue), "seconds": round(seconds, 1), "rates": by_area, "mutants": rows},
            indent=1) + "\n")
        (options.out / "mutate.md").write_text(markdown(rows, by_area, seconds))
    print(markdown(rows, by_area, seconds), end="")
    low = [a for a, r in by_area.items() if r["kill_rate"] is not None and r["kill_rate"] < args.min_kill_rate]
    return 1 if low else 0
