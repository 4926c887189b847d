"""Expected and observed values made readable: decoded tensors, pretty JSON, diffs.

Observations travel as base64 little-endian bytes (spec/ADAPTERS.md); a person
reading a failure wants numbers, so tensors are decoded for display. Values that
do not decode (wrong length, unknown dtype) are shown exactly as they came.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any, Optional

from ccts_common import portable_values

# Beyond this many elements a tensor is shown as its raw observation.
MAX_DECODED_ELEMENTS = 4096
# A list of scalars is printed on one line when it fits in this many characters.
INLINE_LIST_WIDTH = 88
MAX_DIFF_LINES = 400
# Longer strings (undecoded tensor data, huge messages) are cut for display.
MAX_STRING = 2000

# Significant digits that round-trip each floating dtype when printed.
_DIGITS: dict[str, Optional[int]] = {"float32": 9, "float64": None, "float16": 5, "bfloat16": 4}


def _round_trip(x: float, digits: Optional[int]) -> Any:
    if math.isnan(x) or math.isinf(x):
        return str(x)               # "nan", "inf", "-inf": JSON has no literal for them
    if digits is None:
        return x
    return float(f"{x:.{digits}g}")


def decode_tensor(obs: dict) -> Optional[dict]:
    """{"dtype", "shape", "values": nested list} of a tensor observation, or None."""
    shape = obs.get("shape")
    if isinstance(shape, list) and all(isinstance(n, int) for n in shape) and math.prod(shape) > MAX_DECODED_ELEMENTS:
        return None
    if isinstance(shape, list) and any(isinstance(n, bool) for n in shape):
        return None
    try:
        dtype, shape, flat = portable_values.decode(obs)
    except (ValueError, TypeError):
        return None
    if dtype in _DIGITS:
        flat = [_round_trip(v, _DIGITS[dtype]) for v in flat]
    return {"dtype": dtype, "shape": shape, "values": portable_values.nest(shape, flat)}


def display_value(value: Any) -> Any:
    """`value` with every tensor observation inside it decoded to numbers."""
    if isinstance(value, dict):
        if value.get("kind") == "tensor" or ({"dtype", "shape", "data"} <= value.keys()):
            decoded = decode_tensor(value)
            if decoded is not None:
                return decoded
        return {k: display_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [display_value(v) for v in value]
    if isinstance(value, str) and len(value) > MAX_STRING:
        return f"{value[:MAX_STRING]}… ({len(value)} characters)"
    return value


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _pretty(value: Any, indent: int) -> str:
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_pretty(v, indent + 2)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if all(_scalar(v) for v in value):
            line = json.dumps(list(value), ensure_ascii=False)
            if len(line) + indent <= INLINE_LIST_WIDTH:
                return line
        items = [inner + _pretty(v, indent + 2) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, default=str)


def pretty_json(value: Any) -> str:
    """Indented JSON of the displayed value; short lists of scalars stay on one line."""
    return _pretty(display_value(value), 0)


def compact_json(value: Any, limit: int = 300) -> str:
    """One-line JSON of the displayed value, cut at `limit` characters with an ellipsis."""
    text = json.dumps(display_value(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def diff_lines(expected: Any, observed: Any) -> list[tuple[str, str]]:
    """Unified diff of the pretty JSON of both values as (kind, line) pairs.

    kind is one of "header", "hunk", "del" (expected only), "add" (observed
    only), "same"; an empty list means the two render identically.
    """
    a, b = pretty_json(expected).splitlines(), pretty_json(observed).splitlines()
    lines: list[tuple[str, str]] = []
    for line in difflib.unified_diff(a, b, "expected", "observed", lineterm="", n=3):
        if line.startswith(("---", "+++")) and len(lines) < 2:
            kind = "header"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("-"):
            kind = "del"
        elif line.startswith("+"):
            kind = "add"
        else:
            kind = "same"
        lines.append((kind, line))
    if len(lines) > MAX_DIFF_LINES:
        cut = len(lines) - MAX_DIFF_LINES
        lines = lines[:MAX_DIFF_LINES] + [("hunk", f"… {cut} more diff lines not shown")]
    return lines
