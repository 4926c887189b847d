"""`run`: executes selected cases × world sizes on rank groups and builds the report."""
from __future__ import annotations

import fnmatch
import json
import os
import platform
import random
import shlex
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ccts_common import outcomes

from .expectations import judge_replies
from .releases import ReleaseSpec, parse_releases
from .results import CaseResult, RankResult
from .session import HelloRefused, RankFault, RankGroup, StaleOutput
from .suite import ACCEPTED_PROTOCOLS, PROTOCOL_VERSION, ROOT, Case, Suite, SuiteError, resolved_fixtures, suite_version
from .validate import case_problems
from .vocabulary import phase_of_error


def default_adapter() -> str:
    build = Path(os.environ.get("CCTS_BUILD_DIR", ROOT / "build"))
    return str(build / "reference" / "adapter" / "ccts-adapter")


RELEASES = "releases:"


@dataclass
class XfailEntry:
    pattern: str
    reason: str
    line: int
    releases: ReleaseSpec | None = None  # None: every version of the implementation
    used: bool = False

    def applies_to(self, version: str | None) -> bool:
        return self.releases is None or self.releases.matches(version)


def load_xfail(path: Path) -> list[XfailEntry]:
    """`<id glob> [releases:<spec>] <reason>` per line (spec/ADAPTERS.md, "Expected failures")."""
    entries = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            entries.append(xfail_entry(line, f"{path}:{number}", number))
    return entries


def xfail_entry(line: str, where: str, number: int) -> XfailEntry:
    parts = line.split(None, 1)
    pattern, rest = parts[0], parts[1] if len(parts) > 1 else ""
    releases = None
    if rest.startswith(RELEASES):  # an optional token right after the pattern
        token, *reason = rest.split(None, 1)
        rest = reason[0] if reason else ""
        try:
            releases = parse_releases(token[len(RELEASES):])
        except ValueError as e:
            raise SuiteError(f"{where}: malformed '{token}': {e} (write e.g. releases:2.6 or "
                             "releases:>=2.4,<2.8)") from None
    if not rest.strip():
        raise SuiteError(f"{where}: an expected failure needs a reason after the id pattern")
    return XfailEntry(pattern, rest.strip(), number, releases)


@dataclass
class RunOptions:
    adapter: str
    world_sizes: list[int]
    patterns: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)
    exitfirst: bool = False
    shuffle: bool = False
    seed: int | None = None
    timeout: float = 60.0
    xfail: Path | None = None
    strict: bool = False
    out: Path = ROOT / "out"
    backend: str = "gloo"
    device: str = "cpu"
    quiet: bool = False
    verbose: bool = False
    command: str = ""


def select(cases: list[Case], options: RunOptions) -> list[Case]:
    chosen = []
    for case in cases:
        if options.areas and case.area not in options.areas:
            continue
        if options.patterns and not any(fnmatch.fnmatchcase(case.id, p) for p in options.patterns):
            continue
        chosen.append(case)
    return chosen


class Progress:
    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.done = 0
        self.quiet = quiet
        self.tty = sys.stdout.isatty()
        self.counts: dict[str, int] = {}

    def update(self, result: CaseResult) -> None:
        self.done += 1
        self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
        label = f"{result.outcome.upper():<11} {result.case}@{result.world_size} ({result.duration_s:.2f}s)"
        if self.tty:
            summary = " ".join(f"{k}:{v}" for k, v in sorted(self.counts.items()))
            sys.stdout.write(f"\r\033[K[{self.done}/{self.total}] {summary}  {result.case}@{result.world_size}")
            sys.stdout.flush()
            if result.outcome in outcomes.FAILING or result.outcome == "xpass":
                sys.stdout.write("\r\033[K" + label + "\n")
        elif not self.quiet or result.outcome in outcomes.FAILING:
            print(label, flush=True)

    def finish(self) -> None:
        if self.tty:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()


def default_device(backend: str) -> str:
    """NCCL needs CUDA tensors; every other backend runs on the CPU unless told (spec/ADAPTERS.md)."""
    return "cuda" if backend == "nccl" else "cpu"


def rerun_command(case_id: str, ws: int, options: RunOptions) -> str:
    cmd = f"./ccts run -k {shlex.quote(case_id)} --world-sizes {ws}"
    if options.backend != "gloo":
        cmd += f" --backend {options.backend}"
    if options.device != default_device(options.backend):
        cmd += f" --device {options.device}"
    if options.adapter != default_adapter():
        cmd += f" --adapter {shlex.quote(options.adapter)}"
    return cmd


def describe_failure(result: CaseResult) -> str:
    lines = [f"--- {result.outcome.upper()} {result.case} at world size {result.world_size} ({result.file})"]
    if result.message:
        lines.append(f"    {result.message}")
    for f in result.failures[:5]:
        where = "all ranks" if f["rank"] is None else f"rank {f['rank']}"
        lines.append(f"    {f['check']} #{f['expectation_index']} on {where}: {f['message']}")
        lines.append(f"      expected: {json.dumps(f['expected'])[:400]}")
        lines.append(f"      observed: {json.dumps(f['observed'])[:400]}")
    for r in result.ranks:
        if r.stderr_tail and result.outcome in outcomes.FAULTS:
            tail = r.stderr_tail.splitlines()[-5:]
            lines.append(f"    rank {r.rank} stderr: " + " | ".join(tail))
    lines.append(f"    rerun: {result.rerun}")
    return "\n".join(lines)


# Consecutive start failures at one world size after which its other cases are
# not tried (each try can cost a whole --timeout).
BREAKER_AFTER = 2

# Rank 0's rendezvous store could not bind the port chosen for it.
PORT_TAKEN = "address already in use"
PORT_RETRIES = 3


class Runner:
    """Runs cases on rank groups of the adapter, one group per world size, kept
    across cases; the judge (expectations.judge_replies) gives each verdict."""

    def __init__(self, suite: Suite, options: RunOptions) -> None:
        self.suite = suite
        self.options = options
        self.groups: dict[int, RankGroup] = {}
        self.implementation: dict[str, Any] | None = None
        self.protocol = PROTOCOL_VERSION  # lowered once if the adapter speaks only an older one
        self.results: list[CaseResult] = []
        self.last_sent: dict[int, CaseResult] = {}  # per world size: the case its group answered last
        self.start_failures: dict[int, list[str]] = {}  # per world size: consecutive ones, why
        self.starting: RankGroup | None = None  # the group being started, if any

    # -- rank groups --------------------------------------------------------
    def group(self, ws: int) -> RankGroup:
        group = self.groups.get(ws)
        if group is None:
            group, hello = self.start_group(ws)
            self.starting = None
            if self.implementation is None:
                self.implementation = {k: hello.get(k) for k in
                                       ("name", "version", "capabilities", "backends", "devices", "build")}
                self.implementation["protocol"] = group.protocol
            self.groups[ws] = group
        return group

    def start_group(self, ws: int) -> tuple[RankGroup, dict[str, Any]]:
        """A started group, offering the newest protocol first; an adapter that
        refuses hello is offered each older accepted one (spec/ADAPTERS.md)."""
        refusals: list[str] = []
        tails: dict[int, str] = {}
        protocols = [p for p in ACCEPTED_PROTOCOLS if p <= self.protocol]
        port_retries = PORT_RETRIES
        while protocols:
            protocol = protocols[0]
            group = RankGroup(self.options.adapter, ws, self.options.backend, self.options.device, protocol=protocol)
            self.starting = group  # an interrupt now must reap it too
            try:
                hello = group.start(self.options.timeout)
            except RankFault as fault:
                tails = {r.rank: r.stderr_text() for r in group.ranks}
                group.kill()
                if port_retries and any(PORT_TAKEN in t.lower() for t in tails.values()):
                    # Another process took the free port between its choice and rank 0's
                    # bind (parallel runs): a fresh group gets a fresh port.
                    port_retries -= 1
                    continue
                refusals.append(str(fault))
                if isinstance(fault, HelloRefused):
                    protocols.pop(0)
                    continue
                raise _StartFailure("; ".join(refusals), tails) from None
            if protocol < PROTOCOL_VERSION and self.implementation is None:  # once per run
                print(f"warning: the adapter speaks protocol {protocol}, which is deprecated (spec/ADAPTERS.md, "
                      f"\"Protocol versions\"); the runner speaks {PROTOCOL_VERSION}", file=sys.stderr)
            self.protocol = protocol
            return group, hello
        raise _StartFailure("; ".join(refusals), tails)

    def drop(self, ws: int) -> None:
        self.last_sent.pop(ws, None)
        group = self.groups.pop(ws, None)
        if group:
            group.kill()

    def close(self) -> None:
        for ws in list(self.groups):
            group = self.groups[ws]
            try:
                group.check_quiet()  # the last case's extra reply, if it came already
            except StaleOutput as stale:
                self.blame(ws, stale)
            group.close()
            del self.groups[ws]  # only now: an interrupt inside close leaves it to kill

    def kill(self) -> None:
        if self.starting is not None:
            self.starting.kill()
        for ws in list(self.groups):
            self.groups.pop(ws).kill()

    # -- one case ---------------------------------------------------------
    def new_result(self, case: Case, ws: int) -> CaseResult:
        # An invalid case is reported too: take from it only fields of the right type.
        title, source, rules = (case.data.get(k) for k in ("title", "source", "requirements"))
        requirements = [r for r in rules if isinstance(r, str)] if isinstance(rules, list) else []
        return CaseResult(case=case.id or case.file.stem, area=case.area, title=title if isinstance(title, str) else "",
                          file=case.relative_file(), source=source if isinstance(source, str) else "",
                          requirements=requirements, world_size=ws, backend=self.options.backend,
                          device=self.options.device, rerun=rerun_command(case.id, ws, self.options))

    def invalid(self, case: Case, ws: int, problems: list[str]) -> CaseResult:
        """A case validate rejects is not sent: `error`, naming file, case and field."""
        result = self.new_result(case, ws)
        result.settle("error", "invalid case: " + "; ".join(problems))
        return result

    def run_one(self, case: Case, ws: int) -> CaseResult:
        start = time.monotonic()
        result = self.new_result(case, ws)
        try:
            self.send_case(case, ws, result)
        except SuiteError as e:
            result.settle("error", str(e))
        result.duration_s = round(time.monotonic() - start, 4)
        return result

    def send_case(self, case: Case, ws: int, result: CaseResult) -> None:
        """Sends the case to the world size's rank group (starting it if need be)
        unless it cannot run there, and records the judge's verdict on the replies."""
        if self.options.backend not in case.backends:
            result.settle("unsupported", f"the case runs on {case.backends}, not {self.options.backend}")
            return
        fixtures = resolved_fixtures(case, self.suite)
        failures = self.start_failures.get(ws, [])
        if len(failures) >= BREAKER_AFTER:
            result.settle("error", f"not run: the adapter's rank group failed to start {len(failures)} times in a "
                                   f"row at world size {ws} (circuit breaker); last: {failures[-1]}")
            return
        try:
            group = self.group(ws)
        except _StartFailure as e:
            stderr = next((t for t in e.tails.values() if t), "")
            why = e.reason + (f"; stderr: {stderr[-300:]}" if stderr else "")
            self.start_failures.setdefault(ws, []).append(why)
            result.settle("error", f"the adapter's rank group did not start: {why}")
            result.ranks = [RankResult(r, "error", None, t) for r, t in e.tails.items()]
            return
        self.start_failures.pop(ws, None)
        implementation = self.implementation or {}
        for what, wanted in (("backends", self.options.backend), ("devices", self.options.device)):
            if wanted not in (implementation.get(what) or []):
                result.settle("unsupported", f"the adapter's {what} are {implementation.get(what) or []}, not {wanted}")
                return
        missing = [n for n in case.needs if n not in implementation.get("capabilities", [])]
        if missing:
            result.settle("unsupported", f"the adapter does not declare {missing}")
            return
        try:
            try:
                replies = group.run_case(case.data, fixtures, self.options.timeout)
            except StaleOutput as stale:
                # A late extra reply to the case before: that case errs, and this one
                # runs on a fresh group, so that no innocent case pays for it.
                self.blame(ws, stale)
                self.drop(ws)
                group = self.group(ws)
                replies = group.run_case(case.data, fixtures, self.options.timeout)
        except _StartFailure as e:
            result.settle("error", f"the adapter's rank group did not restart: {e.reason}")
            return
        except RankFault as fault:
            tails = {r.rank: r.stderr_text() for r in group.ranks}
            self.drop(ws)
            result.settle(fault.outcome, str(fault))
            result.ranks = [RankResult(r, fault.outcome if r == fault.rank else "error", None, t)
                            for r, t in tails.items()]
            return
        derive_phases(case.data.get("steps"), replies)
        result.take(judge_replies(case.data, replies, golden_dir=case.file.parent, label=case.relative_file()))
        self.last_sent[ws] = result

    def blame(self, ws: int, fault: RankFault) -> None:
        """The case the group answered last becomes `error`: its adapter broke the protocol."""
        earlier = self.last_sent.pop(ws, None)
        if earlier is not None:
            earlier.outcome, earlier.message, earlier.failures = "error", str(fault), []
            print(f"--- ERROR {earlier.case} at world size {ws}, found after it was reported: {fault}", flush=True)

    # -- the whole run ----------------------------------------------------
    def plan(self, cases: list[Case], problems: dict[Path, list[str]]) -> list[tuple[Case, int]]:
        """(case, world size) in run order; an invalid case whose world_sizes cannot be
        read is planned at every world size of the run, to be reported there."""
        def sizes(c: Case) -> list[int]:
            if c.file in problems:
                ws = c.data.get("world_sizes", self.options.world_sizes)
                ok = isinstance(ws, list) and all(isinstance(n, int) for n in ws)
                return ws if ok else self.options.world_sizes
            return c.world_sizes
        plan = []
        for ws in self.options.world_sizes:
            batch = [c for c in cases if ws in sizes(c)]
            if self.options.shuffle:
                random.Random(self.options.seed).shuffle(batch)
            plan.extend((c, ws) for c in batch)
        return plan


class _StartFailure(Exception):
    def __init__(self, reason: str, tails: dict[int, str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tails = tails


def derive_phases(steps: Any, replies: list[dict[str, Any]]) -> None:
    """Every error of the replies (the case's and those `raises` recorded) gets the
    phase of the step it names: the runner, not the adapter, says what a phase is
    (protocol 2; a protocol 1 adapter's own phase is replaced)."""
    for reply in replies:
        errors = [reply.get("error")] + [o.get("error") for o in (reply.get("observations") or {}).values()
                                         if isinstance(o, dict) and o.get("kind") == "error"]
        for error in errors:
            if isinstance(error, dict):
                error["phase"] = phase_of_error(steps, error.get("step"))


def apply_xfail(result: CaseResult, entries: list[XfailEntry], strict: bool,
                version: str | None = None) -> None:
    """The first entry that applies to the implementation's version (hello's `version`)
    and matches the case, or case@world_size, decides."""
    for entry in entries:
        if not entry.applies_to(version):
            continue
        if fnmatch.fnmatchcase(result.case, entry.pattern) or fnmatch.fnmatchcase(
                f"{result.case}@{result.world_size}", entry.pattern):
            entry.used = True
            result.xfail_reason = entry.reason
            if result.outcome in outcomes.FAILING:
                result.outcome = "xfail"
            elif result.outcome == "pass":
                result.outcome = "fail" if strict else "xpass"
                if strict:
                    result.message = f"passed but is listed as an expected failure ({entry.reason}); --strict"
            return


def implementation_version(runner: Runner) -> str | None:
    """hello's `version` once a rank group has started, else None."""
    return (runner.implementation or {}).get("version")


def summarize(results: list[CaseResult], rules: dict[str, Any]) -> dict[str, Any]:
    by_outcome: dict[str, int] = {}
    for r in results:
        by_outcome[r.outcome] = by_outcome.get(r.outcome, 0) + 1
    cases: dict[str, bool] = {}
    for r in results:
        cases[r.case] = cases.get(r.case, True) and r.outcome == "pass"
    covered = {req for r in results for req in r.requirements if req in rules}
    passing = {req for req in covered
               if all(r.outcome == "pass" for r in results if req in r.requirements)}
    return {"total": len(results), "by_outcome": by_outcome,
            "cases": {"passed": sum(cases.values()), "total": len(cases)},
            "rules": {"covered": len(covered), "passing": len(passing), "total": len(rules)}}


def host_info() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "python": platform.python_version(), "cpus": os.cpu_count()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(suite: Suite, options: RunOptions) -> int:
    everything, broken = suite.load_cases_or_stand_ins()
    cases = select(everything, options)
    problems = case_problems(suite, [c for c in cases if c.file not in broken])
    problems.update({c.file: [broken[c.file]] for c in cases if c.file in broken})
    xfail_entries = load_xfail(options.xfail) if options.xfail else []
    runner = Runner(suite, options)
    plan = runner.plan(cases, problems)
    rules = suite.rules()
    started, t0 = now(), time.monotonic()
    if not plan:
        print("error: nothing to run: no case matches the selection (-k, --area) at these world sizes",
              file=sys.stderr)
        return 2
    unwritable = out_problem(options.out)
    if unwritable:  # found before the first case, not after the last
        print(f"error: --out {options.out}: {unwritable}", file=sys.stderr)
        return 2
    progress = Progress(len(plan), options.quiet)
    partial = interrupted = False

    interrupts = Interrupts()
    try:
        for case, ws in plan:
            result = runner.invalid(case, ws, problems[case.file]) if case.file in problems else runner.run_one(case, ws)
            apply_xfail(result, xfail_entries, options.strict, implementation_version(runner))
            runner.results.append(result)
            progress.update(result)
            if result.outcome in outcomes.FAILING:
                progress.finish()
                print(describe_failure(result), flush=True)
            if options.exitfirst and result.outcome in outcomes.FAILING:
                partial = len(runner.results) < len(plan)
                break
        runner.close()  # polite: bye, then a grace period an interrupt may cut short
    except KeyboardInterrupt:
        partial = interrupted = True
        progress.finish()
        print("interrupted: killing every rank, writing a partial report", file=sys.stderr)
    finally:
        interrupts.shield()  # from here on an interrupt waits: every rank reaped, the report written
        runner.kill()
    try:
        return finish_run(runner, options, xfail_entries, rules, started, t0, partial, progress)
    finally:
        if not interrupted:  # after an interrupt the process is about to exit: later signals stay ignored
            interrupts.restore()


class Interrupts:
    """SIGINT and SIGTERM while a run lasts: the first raises KeyboardInterrupt
    and shields at once (no gap in which a second one could cut the cleanup
    short). Shielded means ignored by the kernel, not by a Python handler:
    the interpreter resets its own handlers to the default on the way out, and
    a signal then would kill the process after the report was written."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.shielded = False
        self.previous = {signum: signal.signal(signum, self.on_signal) for signum in self.SIGNALS}

    def on_signal(self, signum: int, frame: Any) -> None:
        if not self.shielded:
            self.shield()
            raise KeyboardInterrupt

    def shield(self) -> None:
        self.shielded = True
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def finish_run(runner: Runner, options: RunOptions, xfail_entries: list[XfailEntry], rules: dict[str, Any],
               started: str, t0: float, partial: bool, progress: Progress) -> int:
    """Warnings, the report in every format, the summary line and the exit code."""
    progress.finish()
    for entry in xfail_entries:  # an entry for other releases is not stale
        if not entry.used and entry.applies_to(implementation_version(runner)):
            print(f"warning: {options.xfail}:{entry.line}: '{entry.pattern}' matches no case that ran", file=sys.stderr)
    report = {
        "format": "ccts-report/1",
        "suite": {"name": "ccts", "version": suite_version()},
        "implementation": runner.implementation or {"name": None, "version": None, "capabilities": [],
                                                    "backends": [], "devices": [], "build": {}},
        "host": host_info(), "command": options.command, "started": started, "finished": now(),
        "duration_s": round(time.monotonic() - t0, 3), "partial": partial,
        "world_sizes": options.world_sizes,
        "rules": {rid: {"text": r.text, "chapter": r.chapter, "file": r.file} for rid, r in rules.items()},
        "results": [r.as_dict() for r in runner.results],
        "summary": summarize(runner.results, rules),
    }
    write_report(report, options.out)
    counts = report["summary"]["by_outcome"]
    line = ", ".join(f"{counts.get(k, 0)} {label}" for k, label in
                     (("pass", "passed"), ("fail", "failed"), ("unsupported", "unsupported"), ("skip", "skipped")))
    extra = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()) if k not in ("pass", "fail", "unsupported", "skip"))
    print(line + (", " + extra if extra else ""))
    bad = any(r.outcome in outcomes.FAILING for r in runner.results) or (
        options.strict and any(r.outcome == "xpass" for r in runner.results))
    return 130 if partial and not options.exitfirst else (1 if bad else 0)


def out_problem(out: Path) -> str | None:
    """Why the report cannot be written to `out`, or None: it is made (if missing) and
    written to once, as the report will be."""
    import tempfile
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ccts-write-check-"):
            pass
    except OSError as e:
        return f"cannot write the report there: {e.strerror or e}"
    return None


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    try:
        import reports
        reports.write_all(report, out)
    except Exception as e:  # the JSON is the source of truth; other formats are best effort
        print(f"warning: report formats not written: {e}", file=sys.stderr)
    html = out / "index.html"
    print(f"report: {path}" + (f"  scoreboard: {html}" if html.exists() else ""))
