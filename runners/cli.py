"""ccts runner command line: list, validate, run, report, compare, snapshot, soak, mutate, outcome, golden, bench."""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

from ccts_common import outcomes

from . import execute, snapshot
from .suite import SuiteError, suite_from
from .validate import validate

SKIP_RETURN_CODE = 77


def world_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError("world sizes are positive integers")
    return sizes


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'")
    return value


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: '{text}'")
    return text


def add_suite_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases-dir", help="cases root (default conformance/)")
    p.add_argument("--fixtures-dir", help="fixtures folder (default fixtures/)")
    p.add_argument("--spec-dir", help="spec folder with the rules (default spec/)")
    p.add_argument("--sources-dir", action="append", metavar="DIR",
                   help="implementation sources whose rule citations validate checks (repeatable; "
                   "default reference/ and runners/adapters/)")


def cmd_list(args: argparse.Namespace) -> int:
    for case in suite_from(args).load_cases():
        sizes = ",".join(map(str, case.world_sizes))
        if args.format == "cmake":
            print(f"{case.id}|{case.area}|{sizes}")
        else:
            print(f"{case.id:<60} {case.area:<12} ws {sizes}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    suite = suite_from(args)
    errors = validate(suite)
    for e in errors:
        print(e)
    count = len(suite.case_files())
    print(f"{count} cases, {len(errors)} errors" if errors else f"{count} cases valid")
    return 1 if errors else 0


def run_options(args: argparse.Namespace, out: Path, command: str) -> execute.RunOptions:
    return execute.RunOptions(
        adapter=args.adapter or execute.default_adapter(), world_sizes=args.world_sizes, patterns=args.k or [],
        areas=args.area or [], exitfirst=args.x, shuffle=args.shuffle, seed=args.seed, timeout=args.timeout,
        xfail=Path(args.xfail) if args.xfail else None, strict=args.strict, out=out,
        backend=args.backend, device=args.device or execute.default_device(args.backend), quiet=args.quiet,
        verbose=args.verbose, command=command)


def cmd_run(args: argparse.Namespace) -> int:
    options = run_options(args, Path(args.out), "./ccts run " + " ".join(shlex.quote(a) for a in args.argv))
    try:
        code = execute.run(suite_from(args), options)
    except SuiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if args.exit_zero and code in (0, 1) else code


def print_written(write: Callable[[], list[Path]]) -> int:
    """Runs a report writer; prints the files it wrote, or its error."""
    import reports
    try:
        paths = write()
    except reports.ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import reports
    return print_written(lambda: reports.write_all(reports.load_report(Path(args.report)), Path(args.out)))


def cmd_compare(args: argparse.Namespace) -> int:
    import reports
    paths = [Path(p) for p in args.reports] or snapshot.snapshot_reports()
    if not paths:
        print(f"error: no reports given and none in {snapshot.SNAPSHOT_DIR}", file=sys.stderr)
        return 2
    return print_written(lambda: reports.render_compare(paths, Path(args.out)))


def cmd_snapshot(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else snapshot.run_folder(args.name)
    return snapshot.main(args, run_options(args, out=out,
                                           command="./ccts snapshot " + " ".join(shlex.quote(a) for a in args.argv)),
                         suite_from(args))


def cmd_outcome(args: argparse.Namespace) -> int:
    """For CTest: one case × world size's outcome from a report (0 pass/xfail, 77 unsupported/skip)."""
    try:
        report = json.loads(Path(args.report).read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"no report at {args.report}: {e}")
        return 1
    for result in report.get("results", []):
        if result["case"] == args.case and result["world_size"] == args.world_size:
            print(f"{result['outcome']}: {result['case']}@{result['world_size']} {result.get('message', '')}")
            if result["outcome"] in outcomes.FAILING:
                print(execute.describe_failure(result))
            # xfail and xpass pass under CTest: the expected-failures file speaks for them
            # (--strict already recorded an xpass as fail).
            if result["outcome"] in outcomes.PASSING + outcomes.EXPECTATION:
                return 0
            if result["outcome"] in outcomes.NOT_RUN:
                return SKIP_RETURN_CODE
            return 1
    print(f"{args.case}@{args.world_size} did not run (not in {args.report})")
    return 1


def cmd_golden(args: argparse.Namespace) -> int:
    from . import golden
    return golden.main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "mod_tracker":
        from .benchmarks import tracker
        return tracker.main(args)
    if args.what == "checkpoint":
        from .benchmarks import checkpoint
        return checkpoint.main(args)
    if args.what:
        from .benchmarks import apis
        return apis.main(args)
    from .benchmarks import sessions
    if args.world_sizes is None:
        args.world_sizes = [1, 2, 4]
    return sessions.main(args)


BENCH_EPILOG = """\
examples:
  ./ccts bench                      # time per case x world size vs fresh rank groups
  ./ccts bench replicate            # reference replicate vs PyTorch DDP: BenchMLP, BenchManySmall at 2, 4 ranks
  ./ccts bench fully_shard          # reference fully_shard vs FSDP2 at 2, 4 ranks: step time, peak memory, bytes
  ./ccts bench replicate --fixture BenchManySmall --world-sizes 2 --steps 20 --rounds 3
  ./ccts bench mod_tracker          # forward+backward with a tracker and user hooks vs without, both sides
  ./ccts bench checkpoint           # peak activation memory, checkpointed vs not, both sides
"""


def add_run_options(ru: argparse.ArgumentParser) -> None:
    """What selects and runs cases: shared by run and snapshot."""
    ru.add_argument("--adapter", help="adapter command (default: the reference's ccts-adapter)")
    ru.add_argument("--world-sizes", type=world_sizes, default=[1, 2, 4])
    ru.add_argument("-k", action="append", metavar="PATTERN", help="case id glob (repeatable)")
    ru.add_argument("--area", action="append", help="only this area (repeatable)")
    ru.add_argument("-x", action="store_true", help="stop at the first failure")
    ru.add_argument("--shuffle", action="store_true", help="run cases in random order")
    ru.add_argument("--seed", type=int, help="seed of --shuffle")
    ru.add_argument("--timeout", type=seconds, default=60.0, help="seconds per case (default 60)")
    ru.add_argument("--xfail", type=existing_file, help="expected failures: '<id glob> [releases:<spec>] <reason>' per line "
                    "(spec/ADAPTERS.md)")
    ru.add_argument("--strict", action="store_true", help="an unexpected pass is a failure")
    ru.add_argument("--backend", default="gloo", choices=["gloo", "nccl"],
                    help="process group backend (default gloo)")
    ru.add_argument("--device", choices=["cpu", "cuda"],
                    help="where models and inputs live (default: cuda for nccl, else cpu)")
    ru.add_argument("-q", "--quiet", action="store_true")
    ru.add_argument("-v", "--verbose", action="store_true")
    add_suite_options(ru)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccts", description="conformance suite runner")
    sub = p.add_subparsers(dest="verb", required=True)

    ls = sub.add_parser("list", help="list cases")
    ls.add_argument("--format", choices=["text", "cmake"], default="text")
    add_suite_options(ls)
    ls.set_defaults(func=cmd_list)

    va = sub.add_parser("validate", help="check cases and fixtures")
    add_suite_options(va)
    va.set_defaults(func=cmd_validate)

    ru = sub.add_parser("run", help="run cases against an adapter")
    add_run_options(ru)
    ru.add_argument("--out", default="out", help="report folder (default out/)")
    ru.add_argument("--exit-zero", action="store_true", help="exit 0 whenever the run completed (CTest fixtures)")
    ru.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="render report formats from a report.json")
    rp.add_argument("report")
    rp.add_argument("--out", default="out")
    rp.set_defaults(func=cmd_report)

    co = sub.add_parser("compare", help="several implementations side by side")
    co.add_argument("reports", nargs="*", help="report.json files (default: the committed reports/snapshot/*.json)")
    co.add_argument("--out", default="out/compare")
    co.set_defaults(func=cmd_compare)

    sn = sub.add_parser("snapshot", help="run the suite and commit its report.json as reports/snapshot/NAME.json")
    sn.add_argument("name", help="file name in reports/snapshot/, e.g. reference-gloo or pytorch-2.11-nccl")
    sn.add_argument("--snapshot-dir", default=str(snapshot.SNAPSHOT_DIR), help="default reports/snapshot/")
    sn.add_argument("--out", help="the run's report folder (default out/snapshot/NAME/)")
    add_run_options(sn)
    sn.set_defaults(func=cmd_snapshot)

    # Listed here; main() hands its arguments to soak's own parser (run options pass through).
    sub.add_parser("soak", help="run the suite N times shuffled; count non-pass results, lost results, orphans "
                   "(./ccts soak -h)")
    sub.add_parser("mutate", help="run the suite against mutants of the pinned PyTorch's sources; kill rates "
                   "(./ccts mutate -h)")

    oc = sub.add_parser("outcome", help="one result's outcome as an exit code (CTest)")
    oc.add_argument("--report", required=True)
    oc.add_argument("--case", required=True)
    oc.add_argument("--world-size", type=int, required=True)
    oc.set_defaults(func=cmd_outcome)

    go = sub.add_parser("golden", help="write golden values from the oracle (default: the PyTorch adapter)")
    go.add_argument("--adapter", help="oracle adapter command (default: python3 -m runners.adapters.pytorch)")
    go.add_argument("-k", action="append", metavar="PATTERN", help="case id glob (repeatable)")
    go.add_argument("--check", action="store_true", help="write nothing; exit 1 if a golden file would change")
    go.add_argument("--timeout", type=float, default=120.0)
    add_suite_options(go)
    go.set_defaults(func=cmd_golden)

    be = sub.add_parser("bench", help="amortized time per case x world size vs fresh rank groups; "
                        "with 'replicate' or 'fully_shard': training-step benchmarks of the reference's APIs",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=BENCH_EPILOG)
    be.add_argument("what", nargs="?", choices=["replicate", "fully_shard", "mod_tracker", "checkpoint"],
                    help="replicate vs PyTorch DDP, or fully_shard vs FSDP2 (default: the suite's cases)")
    be.add_argument("--adapter")
    be.add_argument("--world-sizes", type=world_sizes, default=None,
                    help="default 1,2,4 (cases), 2,4 (replicate, fully_shard; --smoke: 2, and 1,2)")
    be.add_argument("--baseline-cases", type=int, default=6)
    be.add_argument("-k", dest="patterns", action="append", default=[], metavar="GLOB",
                    help="the suite's throughput: only cases whose id matches (repeatable)")
    be.add_argument("--ctest-dir", help="the suite's throughput: the build folder whose last ctest run gives the "
                    "oracle's share (default: CCTS_BUILD_DIR or build/)")
    api = be.add_argument_group("replicate and fully_shard")
    api.add_argument("--warmup", type=int, help="untimed steps first, per run (default 2; BenchManySmall 5)")
    api.add_argument("--steps", type=int, help="timed steps per run (default 5; BenchManySmall 25)")
    api.add_argument("--nosync-steps", type=int, help="replicate: also steps without gradient sync (default 0)")
    api.add_argument("--rounds", type=int, help="interleaved runs of each side (default 2)")
    api.add_argument("--threads", type=int, default=1, help="torch threads per rank, both sides (default 1)")
    api.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    api.add_argument("--fixture", help="fixture to train (default: replicate BenchMLP and BenchManySmall, "
                     "fully_shard BenchMLP, from fixtures/bench.yaml)")
    api.add_argument("--bucket-cap-mb", type=float, help="replicate: bucket_cap_mb of both sides (default: the "
                     "fixture's, BenchManySmall 1; else DDP's 25)")
    api.add_argument("--smoke", action="store_true", help="seconds: the tiny twins (BenchMLPSmoke, "
                     "BenchManySmallSmoke), 1 warm-up + 2 steps, 1 round")
    api.add_argument("--malloc", choices=["tuned", "glibc"], default="tuned",
                     help="tuned (default): the same fixed glibc mmap and trim thresholds on both sides, so that "
                     "heap-top trimming does not refault gradients in one process only; glibc: its defaults")
    api.add_argument("--ddp-python", default=sys.executable, help="interpreter of PyTorch's side, DDP and FSDP2 "
                     "(default: this one, the pinned PyTorch)")
    api.add_argument("--timeout", type=float, default=600.0, help="seconds per rank group (default 600)")
    api.add_argument("--json", metavar="PATH", help="also write the measurements as JSON")
    add_suite_options(be)
    be.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        from . import soak
        return soak.main(argv[1:])
    if argv[:1] == ["mutate"]:
        from . import mutate
        return mutate.main(argv[1:])
    args = parser().parse_args(argv)
    args.argv = argv[1:]
    try:
        return args.func(args)
    except SuiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `./ccts list | head`: the reader left. Python's recipe: point stdout
        # at devnull so the flush at exit raises nothing, and end quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
