"""A read-only view of one report.json ("ccts-report/1") shaped for the writers.

Every writer (JUnit, Markdown, HTML, compare) works from a `ReportView`, so
they agree on grouping, counting, scores and rule coverage.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from ccts_common import outcomes

REPORT_FORMAT = "ccts-report/1"

# The outcome vocabulary of report.schema.json (ccts_common/outcomes.py), in
# display order, and its groups as sets for the writers.
OUTCOMES: tuple[str, ...] = outcomes.OUTCOMES
FAILING_OUTCOMES = frozenset(outcomes.FAILING)
EXPECTATION_OUTCOMES = frozenset(outcomes.EXPECTATION)
NOT_RUN_OUTCOMES = frozenset(outcomes.NOT_RUN)


class ReportError(Exception):
    """A report that cannot be rendered; the message names the file and field."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_report(report: Any, source: str) -> None:
    """Checks the fields the writers rely on; raises ReportError naming `source`."""
    if not isinstance(report, dict):
        raise ReportError(f"{source}: a report is a JSON object, got {type(report).__name__}")
    fmt = report.get("format")
    if fmt != REPORT_FORMAT:
        raise ReportError(f"{source}: field 'format' is {fmt!r}, expected {REPORT_FORMAT!r}")
    results = report.get("results")
    if not isinstance(results, list):
        raise ReportError(f"{source}: field 'results' must be a list")
    for index, result in enumerate(results):
        where = f"{source}: results[{index}]"
        if not isinstance(result, dict):
            raise ReportError(f"{where}: a result is a JSON object")
        case = result.get("case")
        if not isinstance(case, str) or not case:
            raise ReportError(f"{where}: field 'case' must be a non-empty string")
        where = f"{where} (case {case!r})"
        if not isinstance(result.get("area"), str) or not result["area"]:
            raise ReportError(f"{where}: field 'area' must be a non-empty string")
        if not _is_int(result.get("world_size")) or result["world_size"] < 1:
            raise ReportError(f"{where}: field 'world_size' must be a positive integer")
        if result.get("outcome") not in OUTCOMES:
            raise ReportError(
                f"{where}: field 'outcome' is {result.get('outcome')!r}, "
                f"expected one of {', '.join(OUTCOMES)}")
        for name in ("failures", "ranks", "requirements"):
            if result.get(name) is not None and not isinstance(result[name], list):
                raise ReportError(f"{where}: field '{name}' must be a list")
        for i, failure in enumerate(result.get("failures") or []):
            if not isinstance(failure, dict):
                raise ReportError(f"{where}: failures[{i}] must be an object")
        for i, rank in enumerate(result.get("ranks") or []):
            if not isinstance(rank, dict):
                raise ReportError(f"{where}: ranks[{i}] must be an object")
        for i, rule in enumerate(result.get("requirements") or []):
            if not isinstance(rule, str):
                raise ReportError(f"{where}: requirements[{i}] must be a rule id string")
        duration = result.get("duration_s")
        if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool)):
            raise ReportError(f"{where}: field 'duration_s' must be a number")
    rules = report.get("rules", {})
    if not isinstance(rules, dict):
        raise ReportError(f"{source}: field 'rules' must be an object of rule id -> rule")
    for rule_id, rule in rules.items():
        if not isinstance(rule, dict) or not isinstance(rule.get("text", ""), str):
            raise ReportError(f"{source}: rules.{rule_id} must be an object with a string 'text'")
    world_sizes = report.get("world_sizes", [])
    if not isinstance(world_sizes, list) or not all(_is_int(ws) for ws in world_sizes):
        raise ReportError(f"{source}: field 'world_sizes' must be a list of integers")
    for name in ("implementation", "suite", "host", "summary"):
        if report.get(name) is not None and not isinstance(report[name], dict):
            raise ReportError(f"{source}: field '{name}' must be an object")


def load_report_file(path: Path) -> dict:
    """Reads a report.json; JSON errors name the file, line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ReportError(f"{path}: cannot read report: {err.strerror or err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportError(
            f"{path}: not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from err


@dataclass
class Cell:
    """Outcome counts of a group of results (an area at one world size, a row, a column)."""

    counts: Counter = field(default_factory=Counter)

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    @property
    def passed(self) -> int:
        return self.counts["pass"]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def fraction(self) -> str:
        return f"{self.passed}/{self.total}"

    def ordered_counts(self) -> list[tuple[str, int]]:
        return [(o, self.counts[o]) for o in OUTCOMES if self.counts[o]]

    def others(self) -> str:
        """The non-pass counts, e.g. "1 fail, 2 unsupported"; empty when all passed."""
        return ", ".join(f"{n} {o}" for o, n in self.ordered_counts() if o != "pass")

    def summary(self) -> str:
        """"passed/total" plus the non-pass counts, e.g. "2/4 (1 fail, 1 unsupported)"."""
        others = self.others()
        return f"{self.fraction} ({others})" if others else self.fraction

    @property
    def status(self) -> str:
        """pass (all passed), fail (something failing), partial (nothing failing, not all passed)."""
        if self.total and self.passed == self.total:
            return "pass"
        if any(self.counts[o] for o in FAILING_OUTCOMES):
            return "fail"
        return "partial"


@dataclass(frozen=True)
class Score:
    """The headline: scores always carry their denominators."""

    cases_passed: int
    cases_total: int
    rules_passing: int
    rules_covered: int
    rules_total: int

    @property
    def headline(self) -> str:
        return (f"{self.cases_passed}/{self.cases_total} cases, "
                f"{self.rules_passing}/{self.rules_total} rules")

    @property
    def coverage(self) -> str:
        return f"{self.rules_covered}/{self.rules_total} rules covered by a case"


@dataclass
class RuleCoverage:
    """One rule with the results of the cases that list it."""

    id: str
    text: str
    chapter: str
    file: str
    declared: bool                    # False: a case lists an id the spec does not declare
    results: list[dict] = field(default_factory=list)

    @property
    def cases(self) -> list[str]:
        return sorted({r["case"] for r in self.results})

    def results_by_case(self) -> list[tuple[str, list[dict]]]:
        """(case id, its results by world size) for every case that lists the rule."""
        grouped: dict[str, list[dict]] = {}
        for r in self.results:
            grouped.setdefault(r["case"], []).append(r)
        return [(case, sorted(rs, key=lambda r: r["world_size"]))
                for case, rs in sorted(grouped.items())]

    @property
    def status(self) -> str:
        """uncovered, passing, failing, or incomplete (unsupported, skipped, xfail, xpass)."""
        seen = {r["outcome"] for r in self.results}
        if not seen:
            return "uncovered"
        if seen == {"pass"}:
            return "passing"
        if seen & FAILING_OUTCOMES:
            return "failing"
        return "incomplete"


class ReportView:
    """Derived, sorted data of one report; `source` names it in errors and titles."""

    def __init__(self, report: dict, source: str = "report.json") -> None:
        check_report(report, source)
        self.report = report
        self.source = source
        self.results: list[dict] = sorted(
            report["results"],
            key=lambda r: (r["area"], r["case"], r["world_size"], str(r.get("backend") or "")))
        self.rules: dict[str, dict] = report.get("rules") or {}
        self.implementation: dict = report.get("implementation") or {}
        self.suite: dict = report.get("suite") or {}
        self.host: dict = report.get("host") or {}
        self.partial: bool = bool(report.get("partial"))
        self.requested_world_sizes: list[int] = sorted(set(report.get("world_sizes") or []))
        self.world_sizes: list[int] = sorted(
            set(self.requested_world_sizes) | {r["world_size"] for r in self.results})
        self.areas: list[str] = sorted({r["area"] for r in self.results})
        self.multi_backend = len({r.get("backend") for r in self.results}) > 1

        self.cells: dict[tuple[str, int], Cell] = {}
        self.area_totals: dict[str, Cell] = {a: Cell() for a in self.areas}
        self.world_size_totals: dict[int, Cell] = {ws: Cell() for ws in self.world_sizes}
        self.total = Cell()
        for r in self.results:
            self.cells.setdefault((r["area"], r["world_size"]), Cell()).add(r["outcome"])
            self.area_totals[r["area"]].add(r["outcome"])
            self.world_size_totals[r["world_size"]].add(r["outcome"])
            self.total.add(r["outcome"])

        self.rule_coverage = self._rule_coverage()
        self.score = self._score()

    # -- labels ---------------------------------------------------------------

    @property
    def implementation_label(self) -> str:
        name = self.implementation.get("name") or "unknown implementation"
        version = self.implementation.get("version")
        return f"{name} {version}" if version else str(name)

    @property
    def placement_label(self) -> str:
        """Where the results ran ("gloo/cpu", "nccl/cuda"), from the results themselves."""
        seen = sorted({f"{r.get('backend') or 'gloo'}/{r.get('device') or 'cpu'}" for r in self.results})
        return ", ".join(seen)

    @property
    def suite_label(self) -> str:
        name = self.suite.get("name") or "ccts"
        version = self.suite.get("version")
        return f"{name} {version}" if version else str(name)

    @property
    def build_label(self) -> str:
        build = self.implementation.get("build")
        if isinstance(build, dict):
            return ", ".join(f"{k} {'none' if v is None else v}" for k, v in build.items()) or "—"
        return "—" if build is None else str(build)

    @property
    def host_label(self) -> str:
        parts = [str(self.host[k]) for k in ("hostname", "platform") if self.host.get(k)]
        if self.host.get("python"):
            parts.append(f"Python {self.host['python']}")
        if self.host.get("cpus"):
            parts.append(f"{self.host['cpus']} CPUs")
        return ", ".join(parts) or "—"

    def result_name(self, result: dict) -> str:
        """The JUnit test name, "<id>@ws<N>" (plus "[backend]" when a run mixes backends)."""
        name = f"{result['case']}@ws{result['world_size']}"
        if self.multi_backend:
            name += f"[{result.get('backend')}]"
        return name

    def anchor(self, result: dict) -> str:
        """The HTML id of a result's detail, "case-<id>-ws<N>"."""
        anchor = f"case-{result['case']}-ws{result['world_size']}"
        if self.multi_backend:
            anchor += f"-{result.get('backend')}"
        return anchor

    # -- groups ---------------------------------------------------------------

    def cell(self, area: str, world_size: int) -> Optional[Cell]:
        """None when the area has no result at that world size (not run: shown as missing)."""
        return self.cells.get((area, world_size))

    def results_with(self, outcomes: Iterable[str]) -> list[dict]:
        wanted = set(outcomes)
        return [r for r in self.results if r["outcome"] in wanted]

    @property
    def failing(self) -> list[dict]:
        return self.results_with(FAILING_OUTCOMES)

    @property
    def expectation_results(self) -> list[dict]:
        return self.results_with(EXPECTATION_OUTCOMES)

    @property
    def not_run(self) -> list[dict]:
        return self.results_with(NOT_RUN_OUTCOMES)

    def not_run_counts(self, outcome: str) -> list[tuple[str, int]]:
        """(area, count) of one not-run outcome, areas without any left out."""
        return [(a, self.area_totals[a].counts[outcome]) for a in self.areas
                if self.area_totals[a].counts[outcome]]

    def rule(self, rule_id: str) -> RuleCoverage:
        return self.rule_coverage[rule_id]

    @property
    def uncovered_rules(self) -> list[RuleCoverage]:
        return [c for c in self.rule_coverage.values() if c.status == "uncovered"]

    # -- derived --------------------------------------------------------------

    def _rule_coverage(self) -> dict[str, RuleCoverage]:
        coverage: dict[str, RuleCoverage] = {}
        for rule_id in sorted(self.rules):
            rule = self.rules[rule_id]
            coverage[rule_id] = RuleCoverage(
                id=rule_id, text=str(rule.get("text", "")), chapter=str(rule.get("chapter", "")),
                file=str(rule.get("file", "")), declared=True)
        for r in self.results:
            for rule_id in r.get("requirements") or []:
                if rule_id not in coverage:
                    coverage[rule_id] = RuleCoverage(
                        id=rule_id, text="", chapter="", file="", declared=False)
                coverage[rule_id].results.append(r)
        return dict(sorted(coverage.items()))

    def _score(self) -> Score:
        """The runner's summary when it has one (it knows the whole suite), else from results."""
        by_case: dict[str, set[str]] = {}
        for r in self.results:
            by_case.setdefault(r["case"], set()).add(r["outcome"])
        declared = [c for c in self.rule_coverage.values() if c.declared]
        computed = Score(
            cases_passed=sum(1 for seen in by_case.values() if seen == {"pass"}),
            cases_total=len(by_case),
            rules_passing=sum(1 for c in declared if c.status == "passing"),
            rules_covered=sum(1 for c in declared if c.status != "uncovered"),
            rules_total=len(declared))
        summary = self.report.get("summary") or {}
        cases, rules = summary.get("cases"), summary.get("rules")
        try:
            return Score(
                cases_passed=int(cases["passed"]), cases_total=int(cases["total"]),
                rules_passing=int(rules["passing"]), rules_covered=int(rules["covered"]),
                rules_total=int(rules["total"]))
        except (KeyError, TypeError, ValueError):
            return computed
