"""Release specs of expected-failure entries (spec/ADAPTERS.md, "Expected failures"):
`2.6` or `2.6.*` (that release series), `==2.6.1`, `>=2.4`, `>2.4`, `<=2.8`, `<2.8`,
and comma lists of them that must all hold (`>=2.4,<2.8`). They are compared with
the implementation's version from hello ("2.6.0+debian", "2.13.0+cpu",
"1.13.0a0+git7c98e70"): its numeric release parts only, so a local label or a
pre-release suffix never decides. A few lines instead of a `packaging` dependency."""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Callable, Optional

Release = tuple[int, ...]

CLAUSE = re.compile(r"(?P<op>>=|<=|==|>|<)?(?P<release>[0-9]+(?:\.[0-9]+)*)(?P<series>\.\*)?")
LEADING_RELEASE = re.compile(r"v?([0-9]+(?:\.[0-9]+)*)")
COMPARE: dict[str, Callable[[Release, Release], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


def release_of(version: Optional[str]) -> Optional[Release]:
    """The numeric release parts a version starts with; None when it starts with none."""
    match = LEADING_RELEASE.match((version or "").strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def padded(release: Release, length: int) -> Release:
    return release + (0,) * (length - len(release))


@dataclass(frozen=True)
class Clause:
    op: str  # one of COMPARE, or "series" for a bare `2.6` / `2.6.*`
    release: Release

    def holds(self, release: Release) -> bool:
        if self.op == "series":  # 2.6 is every 2.6.x, not 2.60: whole parts, never a string prefix
            return padded(release, len(self.release))[:len(self.release)] == self.release
        length = max(len(release), len(self.release))  # 2.6 == 2.6.0
        return COMPARE[self.op](padded(release, length), padded(self.release, length))


@dataclass(frozen=True)
class ReleaseSpec:
    text: str
    clauses: tuple[Clause, ...]

    def matches(self, version: Optional[str]) -> bool:
        """Every clause holds for the version; an unknown or non-numeric version matches nothing."""
        release = release_of(version)
        return release is not None and all(c.holds(release) for c in self.clauses)


def parse_clause(text: str) -> Clause:
    match = CLAUSE.fullmatch(text)
    if not match:
        raise ValueError(f"'{text}' is not a release clause")
    op, series = match.group("op"), match.group("series")
    if series and op not in (None, "=="):
        raise ValueError(f"'{text}': a series (.*) takes no {op}")
    release = tuple(int(part) for part in match.group("release").split("."))
    return Clause("series" if series or op is None else op, release)


def parse_releases(text: str) -> ReleaseSpec:
    """A spec as written after `releases:`; ValueError saying what is wrong."""
    if not text:
        raise ValueError("no release after 'releases:'")
    return ReleaseSpec(text, tuple(parse_clause(part) for part in text.split(",")))
