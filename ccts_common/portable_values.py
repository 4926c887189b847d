"""The portable value generator and tensor encoding of spec/values.md, in pure Python.

The twin of reference/src/values/: the PyTorch adapter and the runner use it so
that fixtures, batches and observations agree bit for bit with every adapter.
"""
from __future__ import annotations

import base64
import math
import struct
from typing import Iterable, Sequence

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15

DTYPES = {  # name -> (struct code, bytes per element)
    "float32": ("f", 4),
    "float64": ("d", 8),
    "float16": ("e", 2),
    "bfloat16": ("H", 2),
    "int64": ("q", 8),
    "int32": ("i", 4),
    "bool": ("?", 1),
}


def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) & MASK
    return h


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def counter_hash(seed: int, stream: int, index: int) -> int:
    return mix64(mix64(mix64((seed + GOLDEN) & MASK) ^ ((stream + GOLDEN) & MASK)) ^ ((index + GOLDEN) & MASK))


def unit_uniform(seed: int, stream: int, index: int) -> float:
    return (counter_hash(seed, stream, index) >> 40) * (1.0 / 16777216.0)


def to_float32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def uniform(shape: Sequence[int], low: float, high: float, seed: int, stream: int) -> list[float]:
    return [to_float32(low + (high - low) * unit_uniform(seed, stream, i)) for i in range(numel(shape))]


def normal(shape: Sequence[int], seed: int, stream: int) -> list[float]:
    return [to_float32(sum(unit_uniform(seed, stream, 12 * i + k) for k in range(12)) - 6.0)
            for i in range(numel(shape))]


def encode(dtype: str, shape: Sequence[int], values: Iterable[float | int | bool]) -> dict:
    code, _ = DTYPES[dtype]
    flat = list(values)
    if dtype == "bfloat16":
        raw = b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in flat)
    else:
        raw = struct.pack(f"<{len(flat)}{code}", *flat)
    return {"kind": "tensor", "dtype": dtype, "shape": list(shape), "data": base64.b64encode(raw).decode("ascii")}


def decode(observation: dict) -> tuple[str, list[int], list[float | int | bool]]:
    """(dtype, shape, flat row-major values) of a tensor observation; ValueError names the field."""
    dtype = observation.get("dtype")
    if dtype not in DTYPES:
        raise ValueError(f"tensor.dtype: unknown dtype {dtype!r}")
    shape = observation.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError("tensor.shape: expected a list of non-negative integers")
    try:
        raw = base64.b64decode(observation.get("data", ""), validate=True)
    except (ValueError, TypeError) as e:
        raise ValueError(f"tensor.data: not base64: {e}") from None
    code, size = DTYPES[dtype]
    n = numel(shape)
    if len(raw) != n * size:
        raise ValueError(f"tensor.data: {len(raw)} bytes do not match shape and dtype ({n * size} expected)")
    if dtype == "bfloat16":
        values = [struct.unpack("<f", b"\0\0" + raw[2 * i:2 * i + 2])[0] for i in range(n)]
    else:
        values = list(struct.unpack(f"<{n}{code}", raw))
    return dtype, shape, values


def nest(shape: Sequence[int], flat: list) -> object:
    """Flat row-major values as nested lists of the given shape (a scalar for shape [])."""
    if not shape:
        return flat[0] if flat else None
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [nest(shape[1:], flat[i * step:(i + 1) * step]) for i in range(shape[0])]


def round_to(code: str, value: float) -> float:
    """value as the given floating type stores it ('f': float32, 'd': float64)."""
    return struct.unpack("<" + code, struct.pack("<" + code, value))[0]
