"""The runner is the only judge: every expectation of spec/CASES.md, evaluated
over the observations of all ranks."""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from ccts_common import portable_values

from .results import RankResult, Verdict

DEFAULT_TOLERANCE = {"rtol": 1.3e-6, "atol": 1e-5}


def case_tolerance(case: dict[str, Any]) -> dict[str, float]:
    """The case's `tolerance` over the default one (spec/CASES.md)."""
    return {**DEFAULT_TOLERANCE, **(case.get("tolerance") or {})}


@dataclass
class Failure:
    check: str
    expectation_index: int
    rank: int | None
    expected: Any
    observed: Any
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "expectation_index": self.expectation_index, "rank": self.rank,
                "expected": self.expected, "observed": self.observed, "message": self.message}


class Mismatch(Exception):
    def __init__(self, message: str, expected: Any = None, observed: Any = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.observed = observed


def shorten(value: Any, limit: int = 12) -> Any:
    """Long lists cut to their head, so failures stay readable."""
    if isinstance(value, list):
        head = [shorten(v, limit) for v in value[:limit]]
        return head + [f"... {len(value) - limit} more"] if len(value) > limit else head
    if isinstance(value, dict):
        return {k: shorten(v, limit) for k, v in value.items()}
    return value


def tensor_values(obs: dict[str, Any]) -> tuple[str, list[int], list[Any]]:
    try:
        return portable_values.decode(obs)
    except ValueError as e:
        raise Mismatch(f"bad tensor observation: {e}") from None


def flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in flatten(v)]
    return [value]


def shape_of(value: Any) -> list[int]:
    if isinstance(value, list):
        return [len(value)] + (shape_of(value[0]) if value else [])
    return []


def readable(obs: Any) -> Any:
    """An observation as plain JSON for messages and reports (tensors decoded)."""
    if not isinstance(obs, dict):
        return obs
    kind = obs.get("kind")
    if kind == "tensor":
        try:
            dtype, shape, flat = portable_values.decode(obs)
        except ValueError:
            return obs
        return {"dtype": dtype, "shape": shape, "values": shorten(portable_values.nest(shape, flat))}
    if kind == "named_tensors":
        return {name: readable(t) for name, t in obs.get("items", [])}
    if kind == "strings":
        return obs.get("items")
    if kind == "json":
        return obs.get("value")
    if kind == "error":
        return obs.get("error")
    return obs


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, but true is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def json_contains(actual: Any, pattern: Any) -> bool:
    """A mapping contains each key of the pattern with a contained value;
    anything else must be equal (json_equal)."""
    if isinstance(pattern, dict):
        return isinstance(actual, dict) and all(k in actual and json_contains(actual[k], v) for k, v in pattern.items())
    return json_equal(actual, pattern)


def round_to_dtype(dtype: str, value: float) -> float:
    """A literal number as a tensor of `dtype` stores it (round to nearest even)."""
    if dtype == "float64":
        return float(value)
    if dtype == "float16":
        try:
            return portable_values.round_to("e", value)
        except OverflowError:
            return math.copysign(math.inf, value)
    single = portable_values.round_to("f", value)
    if dtype == "bfloat16" and math.isfinite(single):
        bits = struct.unpack("<I", struct.pack("<f", single))[0]
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return struct.unpack("<f", struct.pack("<I", bits))[0]
    return single


def same(a: Any, b: Any) -> bool:
    """Exact equality of two observations (tensors bit for bit)."""
    if not isinstance(a, dict) or not isinstance(b, dict) or a.get("kind") != b.get("kind"):
        return False
    kind = a["kind"]
    if kind == "tensor":
        return (a.get("dtype"), a.get("shape"), a.get("data")) == (b.get("dtype"), b.get("shape"), b.get("data"))
    if kind == "named_tensors":
        ia, ib = a.get("items", []), b.get("items", [])
        return len(ia) == len(ib) and all(x[0] == y[0] and same(x[1], y[1]) for x, y in zip(ia, ib))
    return json_equal(a, b)


def equal_to_literal(obs: dict[str, Any], value: Any) -> bool:
    kind = obs.get("kind")
    if kind == "strings":
        return obs.get("items") == value
    if kind == "json":
        return json_equal(obs.get("value"), value)
    if kind == "tensor":
        dtype, shape, flat = tensor_values(obs)
        if shape_of(value) != shape:
            return False
        want = flatten(value)
        if len(want) != len(flat) or not all(isinstance(w, (int, float)) for w in want):
            return False
        if dtype in ("float32", "float16", "bfloat16", "float64"):
            return all(isinstance(w, (int, float)) and not isinstance(w, bool)
                       and round_to_dtype(dtype, float(w)) == f for w, f in zip(want, flat))
        if dtype == "bool":
            return all(isinstance(w, bool) and w == f for w, f in zip(want, flat))
        return all(not isinstance(w, bool) and float(w).is_integer() and int(w) == f for w, f in zip(want, flat))
    if kind == "named_tensors":
        items = obs.get("items", [])
        if not isinstance(value, dict) or [n for n, _ in items] != list(value):
            return False
        return all(equal_to_literal(t, value[n]) for n, t in items)
    if kind == "error":
        return json_equal(obs.get("error"), value)
    return False


def close(a: dict[str, Any], b: dict[str, Any], rtol: float, atol: float) -> str | None:
    """None if allclose, else why not."""
    if a.get("kind") != b.get("kind"):
        return f"kinds differ: {a.get('kind')} vs {b.get('kind')}"
    if a["kind"] == "named_tensors":
        names_a = [n for n, _ in a.get("items", [])]
        names_b = [n for n, _ in b.get("items", [])]
        if names_a != names_b:
            return f"names differ: {shorten(names_a)} vs {shorten(names_b)}"
        for (name, ta), (_, tb) in zip(a["items"], b["items"]):
            why = close(ta, tb, rtol, atol)
            if why:
                return f"{name}: {why}"
        return None
    if a["kind"] != "tensor":
        return None if json_equal(a, b) else "values differ"
    dtype_a, shape_a, va = tensor_values(a)
    dtype_b, shape_b, vb = tensor_values(b)
    if dtype_a != dtype_b:
        return f"dtypes differ: {dtype_a} vs {dtype_b}"
    if shape_a != shape_b:
        return f"shapes differ: {shape_a} vs {shape_b}"
    worst = None
    for i, (x, y) in enumerate(zip(va, vb)):
        if not (abs(x - y) <= atol + rtol * abs(y)) and not (x == y):
            if worst is None or abs(x - y) > worst[1]:
                worst = (i, abs(x - y), x, y)
    if worst:
        return f"element {worst[0]} differs by {worst[1]:.3g} ({worst[2]!r} vs {worst[3]!r}; rtol {rtol:g}, atol {atol:g})"
    return None


class Judge:
    """Evaluates a case's `expect` list over per-rank observations."""

    def __init__(self, case: dict[str, Any], observations: list[dict[str, Any]], errors: list[Any],
                 golden_dir: Any = None) -> None:
        self.case = case
        self.observations = observations  # index = rank
        self.errors = errors
        self.tolerance = case_tolerance(case)
        self.golden_dir = golden_dir
        self.case_error: Any = None  # the error of the rank being judged

    def failures(self) -> list[Failure]:
        out: list[Failure] = []
        for index, expectation in enumerate(self.case.get("expect") or []):
            (check, body), = expectation.items()
            out.extend(self.evaluate(index, check, body))
        return out

    def evaluate(self, index: int, check: str, body: Any) -> list[Failure]:
        failures = []
        if check in ("same_across_ranks", "different_across_ranks"):
            try:
                self.across_ranks(check, body)
            except Mismatch as m:
                failures.append(Failure(check, index, None, m.expected, m.observed, str(m)))
            return failures
        ranks = body.get("ranks") if isinstance(body, dict) else None
        for rank, obs in enumerate(self.observations):
            if ranks is not None and rank not in ranks:
                continue
            self.case_error = self.errors[rank] if rank < len(self.errors) else None
            try:
                getattr(self, "check_" + check)(body, obs)
            except Mismatch as m:
                failures.append(Failure(check, index, rank, m.expected, m.observed, str(m)))
        return failures

    # -- helpers ----------------------------------------------------------
    def get(self, obs: dict[str, Any], name: str) -> dict[str, Any]:
        if name not in obs:
            raise Mismatch(f"observation '{name}' is missing", expected=f"an observation named {name}",
                           observed=sorted(obs))
        return obs[name]

    # -- checks -----------------------------------------------------------
    def check_equal(self, body: dict[str, Any], obs: dict[str, Any]) -> None:
        actual = self.get(obs, body["actual"])
        if "value" in body:
            if not equal_to_literal(actual, body["value"]):
                raise Mismatch(f"{body['actual']} differs from the expected value",
                               expected=shorten(body["value"]), observed=readable(actual))
        else:
            expected = self.get(obs, body["expected"])
            if not same(actual, expected):
                raise Mismatch(f"{body['actual']} differs from {body['expected']}",
                               expected=readable(expected), observed=readable(actual))

    def check_not_equal(self, body: dict[str, Any], obs: dict[str, Any]) -> None:
        actual = self.get(obs, body["actual"])
        if "value" in body:
            if equal_to_literal(actual, body["value"]):
                raise Mismatch(f"{body['actual']} equals the value it must differ from",
                               expected=f"anything but {shorten(body['value'])}", observed=readable(actual))
        elif same(actual, self.get(obs, body["expected"])):
            raise Mismatch(f"{body['actual']} equals {body['expected']} but must differ",
                           expected=f"different from {body['expected']}", observed=readable(actual))

    def check_allclose(self, body: dict[str, Any], obs: dict[str, Any]) -> None:
        actual = self.get(obs, body["actual"])
        expected = self.get(obs, body["expected"])
        why = close(actual, expected, float(body.get("rtol", self.tolerance["rtol"])),
                    float(body.get("atol", self.tolerance["atol"])))
        if why:
            raise Mismatch(f"{body['actual']} is not close to {body['expected']}: {why}",
                           expected=readable(expected), observed=readable(actual))

    def check_set_equal(self, body: dict[str, Any], obs: dict[str, Any]) -> None:
        actual = self.get(obs, body["actual"])
        want = body["value"] if "value" in body else readable(self.get(obs, body["expected"]))
        got = readable(actual)
        if not isinstance(got, list) or sorted(map(json.dumps, got)) != sorted(map(json.dumps, want)):
            raise Mismatch(f"{body['actual']} is not the expected set", expected=want, observed=got)

    def check_contains(self, body: dict[str, Any], obs: dict[str, Any]) -> None:
        actual = self.get(obs, body["actual"])
        if actual.get("kind") != "json" or not json_contains(actual.get("value"), body["value"]):
            raise Mismatch(f"{body['actual']} does not contain the expected value",
                           expected=shorten(body["value"]), observed=readable(actual))

    def check_no_error(self, body: Any, obs: dict[str, Any]) -> None:
        name = body if isinstance(body, str) else body["actual"]
        actual = self.get(obs, name)
        if actual.get("kind") != "error" or actual.get("error") is not None:
            raise Mismatch(f"{name} recorded an error", expected=None, observed=readable(actual))

    def check_error(self, body: dict[str, Any], obs: dict[str, Any]) -> None:
        if "actual" in body:
            recorded = self.get(obs, body["actual"])
            error = recorded.get("error") if recorded.get("kind") == "error" else None
            label = body["actual"]
        else:
            error = self.case_error
            label = "the case"
        expected = {k: body[k] for k in ("kind", "phase", "message", "message_regex", "message_prefix") if k in body}
        if error is None:
            raise Mismatch(f"{label} raised no error", expected=expected, observed=None)
        problems = []
        if error.get("kind") != body["kind"]:
            problems.append(f"kind {error.get('kind')!r} is not {body['kind']!r}")
        if "phase" in body and error.get("phase") != body["phase"]:
            problems.append(f"phase {error.get('phase')!r} is not {body['phase']!r}")
        message = error.get("message", "")
        if "message" in body and message != body["message"]:
            problems.append("message differs")
        if "message_prefix" in body and not message.startswith(body["message_prefix"]):
            problems.append("message does not start with the expected prefix")
        if "message_regex" in body and not re.search(body["message_regex"], message):
            problems.append("message does not match the expected pattern")
        if problems:
            raise Mismatch(f"{label}: " + "; ".join(problems), expected=expected, observed=error)

    def check_golden(self, body: dict[str, Any], obs: dict[str, Any]) -> None:
        from pathlib import Path
        path = Path(self.golden_dir or ".") / body["file"]
        try:
            golden = json.loads(path.read_text())["observation"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise Mismatch(f"golden file {path} cannot be read: {e!r}") from None
        actual = self.get(obs, body["actual"])
        why = close(actual, golden, self.tolerance["rtol"], self.tolerance["atol"])
        if why:
            raise Mismatch(f"{body['actual']} differs from {body['file']}: {why}",
                           expected=readable(golden), observed=readable(actual))

    def across_ranks(self, check: str, name: str) -> None:
        values = []
        for rank, obs in enumerate(self.observations):
            values.append(self.get(obs, name))
        if check == "same_across_ranks":
            for rank in range(1, len(values)):
                if not same(values[0], values[rank]):
                    raise Mismatch(f"{name} on rank {rank} differs from rank 0",
                                   expected=readable(values[0]), observed=readable(values[rank]))
        else:
            for i in range(len(values)):
                for j in range(i + 1, len(values)):
                    if same(values[i], values[j]):
                        raise Mismatch(f"{name} is the same on ranks {i} and {j} but must differ",
                                       expected="different values", observed=readable(values[i]))


def judge_replies(case: dict[str, Any], replies: list[dict[str, Any]], golden_dir: Any = None,
                  label: str = "the case") -> Verdict:
    """The verdict on one `result` reply per rank (the phases of their errors already
    derived): unsupported when a rank said so, fail on an error no expectation asked
    for, else the failures of `expect`."""
    case_id = case.get("id")
    for rank, reply in enumerate(replies):
        if reply.get("case") != case_id or reply.get("rank") != rank or not isinstance(reply.get("observations"), dict):
            return Verdict("error", f"rank {rank} sent a malformed result (case, rank or observations)")
    errors = [r.get("error") for r in replies]
    observations = [r["observations"] for r in replies]
    ranks = [RankResult(r, "pass", e) for r, e in enumerate(errors)]
    raised = [e for e in errors if e]
    unsupported = next((e for e in raised if e.get("kind") == "unsupported"), None)
    if unsupported:
        return Verdict("unsupported", unsupported.get("message", ""), ranks=ranks)
    wants_case_error = any("error" in x and "actual" not in (x.get("error") or {}) for x in case.get("expect") or [])
    if raised and not wants_case_error:
        rank, e = errors.index(raised[0]), raised[0]
        ranks[rank].outcome = "fail"
        failure = Failure("no_error", -1, rank, None, e, "unexpected error")
        return Verdict("fail", f"rank {rank} raised {e.get('kind')} in {e.get('phase')} (step {e.get('step')}): "
                       f"{e.get('message')}", [failure.as_dict()], ranks)
    try:
        failures = Judge(case, observations, errors, golden_dir=golden_dir).failures()
    except Exception as e:  # a case the schema would reject; `validate` names the field
        return Verdict("error", f"the runner cannot judge {label}: {type(e).__name__}: {e} (run ./ccts validate)",
                       ranks=ranks)
    for f in failures:
        if f.rank is not None:
            ranks[f.rank].outcome = "fail"
    if failures:
        return Verdict("fail", failures[0].message, [f.as_dict() for f in failures], ranks)
    return Verdict("pass", "", [], ranks)
