"""Plain-text descriptions of a result, shared by the JUnit and Markdown writers."""

from __future__ import annotations

import re
from typing import Any, Optional

from .values import compact_json

# C0/C1 control characters other than tab, newline and carriage return, plus the
# code points XML and UTF-8 cannot carry (lone surrogates, U+FFFE, U+FFFF).
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

# Failure texts keep values readable but bounded (a tensor can be large).
VALUE_LIMIT = 2000


def visible_text(value: Any) -> str:
    """`value` as text with control characters written as \\xNN / \\uNNNN escapes."""
    return _INVISIBLE.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
        str(value))


def error_line(error: Optional[dict]) -> str:
    """"runtime_error in forward (step 3): message" of an adapter error object."""
    if not isinstance(error, dict):
        return "" if error is None else str(error)
    text = str(error.get("kind") or "error")
    if error.get("phase"):
        text += f" in {error['phase']}"
    if error.get("step") is not None:
        text += f" (step {error['step']})"
    if error.get("message"):
        text += f": {error['message']}"
    return text


def check_label(failure: dict) -> str:
    """"equal (expect[0])" — which expectation a failure comes from."""
    label = str(failure.get("check") or "check")
    if failure.get("expectation_index") is not None:
        label += f" (expect[{failure['expectation_index']}])"
    return label


def rank_label(rank: Any) -> str:
    return "all ranks" if rank is None else f"rank {rank}"


def sorted_failures(result: dict) -> list[dict]:
    """Failures grouped by rank (rank-less, i.e. cross-rank, checks first), stable otherwise."""
    failures = list(result.get("failures") or [])
    return sorted(failures, key=lambda f: (f.get("rank") is not None, f.get("rank") or 0))


def failed_ranks(result: dict) -> list[dict]:
    """Ranks whose own outcome is not pass, or that carry an error."""
    return [rank for rank in result.get("ranks") or []
            if rank.get("outcome") not in (None, "pass") or rank.get("error")]


def failure_text(result: dict, limit: int = VALUE_LIMIT) -> str:
    """Everything needed to understand and rerun one result, as plain text."""
    lines = [f"{result['case']} at world size {result['world_size']}"
             f"{' (' + str(result['backend']) + ')' if result.get('backend') else ''}:"
             f" {result['outcome']}"
             f"{' - ' + str(result['message']) if result.get('message') else ''}"]
    if result.get("xfail_reason"):
        lines.append(f"expected failure: {result['xfail_reason']}")
    for failure in sorted_failures(result):
        lines.append(f"{rank_label(failure.get('rank'))}: {check_label(failure)}"
                     f"{': ' + str(failure['message']) if failure.get('message') else ''}")
        if "expected" in failure:
            lines.append(f"  expected: {compact_json(failure.get('expected'), limit)}")
        if "observed" in failure:
            lines.append(f"  observed: {compact_json(failure.get('observed'), limit)}")
    for rank in failed_ranks(result):
        line = f"rank {rank.get('rank')}: {rank.get('outcome')}"
        if rank.get("error"):
            line += f" - {error_line(rank['error'])}"
        lines.append(line)
    if result.get("requirements"):
        lines.append(f"rules: {', '.join(result['requirements'])}")
    if result.get("file"):
        lines.append(f"case file: {result['file']}")
    if result.get("rerun"):
        lines.append(f"rerun: {result['rerun']}")
    return "\n".join(lines)


def stderr_text(result: dict) -> str:
    """The stderr tails of all ranks, each under a header line."""
    parts = []
    for rank in result.get("ranks") or []:
        tail = rank.get("stderr_tail")
        if tail:
            parts.append(f"--- rank {rank.get('rank')} stderr (tail) ---\n{str(tail).rstrip()}")
    return "\n".join(parts)
