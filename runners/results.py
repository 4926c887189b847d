"""What one case at one world size came to: the `result` entries of report.json
(spec/schema/report.schema.json), built by the runner and the judge."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RankResult:
    rank: int
    outcome: str = "pass"
    error: dict[str, Any] | None = None
    stderr_tail: str = ""


@dataclass
class Verdict:
    """The judge's word on the replies of every rank: an outcome, a one-line
    message, the failed expectations (as report dicts) and each rank's part."""
    outcome: str = "pass"
    message: str = ""
    failures: list[dict[str, Any]] = field(default_factory=list)
    ranks: list[RankResult] = field(default_factory=list)


@dataclass
class CaseResult:
    case: str
    area: str
    title: str
    file: str
    source: str
    requirements: list[str]
    world_size: int
    backend: str
    device: str
    rerun: str
    outcome: str = "pass"
    duration_s: float = 0.0
    message: str = ""
    xfail_reason: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    ranks: list[RankResult] = field(default_factory=list)

    def settle(self, outcome: str, message: str = "") -> None:
        self.outcome, self.message = outcome, message

    def take(self, verdict: Verdict) -> None:
        self.outcome, self.message = verdict.outcome, verdict.message
        self.failures, self.ranks = verdict.failures, verdict.ranks

    def as_dict(self) -> dict[str, Any]:
        """The report's JSON of this result."""
        return asdict(self)
