"""The outcome vocabulary: the outcomes spec/schema/report.schema.json enumerates
(`$defs/outcome`), grouped by what they mean to the runner and the report writers.

The schema is the list; the groups below say what each outcome means, and
loading this module checks that they name exactly the schema's outcomes, so an
outcome added to (or dropped from) the schema cannot be silently ignored.
"""
from __future__ import annotations

from typing import Sequence

from . import schemas

REPORT_SCHEMA = "report.schema.json"

# The case held at that world size.
PASSING: tuple[str, ...] = ("pass",)
# The harness or the implementation broke before a verdict (JUnit <error>).
FAULTS: tuple[str, ...] = ("error", "crash", "timeout")
# A problem of the implementation or of the harness: the run fails.
FAILING: tuple[str, ...] = ("fail",) + FAULTS
# What the implementation's expected-failures file speaks about.
EXPECTATION: tuple[str, ...] = ("xpass", "xfail")
# Cases that did not run to a verdict (JUnit <skipped>).
NOT_RUN: tuple[str, ...] = ("unsupported", "skip")
# Display order: the good, the bad, then what did not really run.
OUTCOMES: tuple[str, ...] = PASSING + FAILING + EXPECTATION + NOT_RUN


def schema_outcomes() -> tuple[str, ...]:
    """The outcomes of the report schema, in its order."""
    definition = schemas.document(REPORT_SCHEMA).get("$defs", {}).get("outcome", {})
    enum = definition.get("enum") if isinstance(definition, dict) else None
    if not isinstance(enum, list) or not all(isinstance(o, str) for o in enum):
        raise schemas.SchemaFileError(f"{schemas.SCHEMA_DIR / REPORT_SCHEMA}: $defs/outcome: "
                                      "expected an enum of outcome names")
    return tuple(enum)


def check(declared: Sequence[str]) -> None:
    """SchemaFileError unless the groups above name exactly the `declared` outcomes."""
    missing = [o for o in declared if o not in OUTCOMES]
    unknown = [o for o in OUTCOMES if o not in declared]
    if missing or unknown or len(set(OUTCOMES)) != len(OUTCOMES):
        raise schemas.SchemaFileError(
            f"{schemas.SCHEMA_DIR / REPORT_SCHEMA}: $defs/outcome lists {', '.join(declared)}; "
            f"ccts_common/outcomes.py gives no meaning to {missing or 'none'} and knows {unknown or 'none'} "
            "the schema does not")


check(schema_outcomes())
