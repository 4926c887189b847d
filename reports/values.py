"""Expected and observed values made readable: decoded tensors, pretty JSON, diffs.

Observations travel as base64 little-endian bytes (spec/ADAPTERS.md); a person
reading a failure wants numbers, so tensors are decoded for display. Values that
do not decode (wrong length, unknown dtype) are shown exactly as they came.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import math
import struct
from typing import Any, Optional

# Beyond this many elements a tensor is shown as its raw observation.
MAX_DECODED_ELEMENTS = 4096
# A list of scalars is printed on one line when it fits in this many characters.
INLINE_LIST_WIDTH = 88
MAX_DIFF_LINES = 400
# Longer strings (undecoded tensor data, huge messages) are cut for display.
MAX_STRING = 2000

# dtype -> (struct code, bytes per element, significant digits that round-trip)
_DTYPES: dict[str, tuple[str, int, Optional[int]]] = {
    "float32": ("f", 4, 9),
    "float64": ("d", 8, None),
    "float16": ("e", 2, 5),
    "bfloat16": ("H", 2, 4),
    "int64": ("q", 8, None),
    "int32": ("i", 4, None),
    "bool": ("?", 1, None),
}


def _round_trip(x: float, digits: Optional[int]) -> Any:
    if math.isnan(x) or math.isinf(x):
        return str(x)               # "nan", "inf", "-inf": JSON has no literal for them
    if digits is None:
        return x
    return float(f"{x:.{digits}g}")


def _nest(flat: list, shape: list[int]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def decode_tensor(obs: dict) -> Optional[dict]:
    """{"dtype", "shape", "values": nested list} of a tensor observation, or None."""
    dtype, shape, data = obs.get("dtype"), obs.get("shape"), obs.get("data")
    if dtype not in _DTYPES or not isinstance(shape, list) or not isinstance(data, str):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        return None
    count = math.prod(shape)
    if count > MAX_DECODED_ELEMENTS:
        return None
    code, size, digits = _DTYPES[dtype]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != count * size:
        return None
    flat = list(struct.unpack(f"<{count}{code}", raw))
    if dtype == "bfloat16":
        flat = [struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in flat]
    if dtype.startswith("float") or dtype == "bfloat16":
        flat = [_round_trip(v, digits) for v in flat]
    return {"dtype": dtype, "shape": shape, "values": _nest(flat, shape)}


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
