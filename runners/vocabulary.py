"""The case vocabulary as spec/schema/case.schema.json defines it, and nowhere else.

The schema annotates, with the `x-ccts` keyword (an annotation JSON Schema
validators ignore):
- each step (`$defs/step/properties/<name>`) and observation kind
  (`.../observe/properties/<kind>`): the `phase` its errors are reported in,
  the capabilities it `needs` beyond `fixtures`, and an `example` program;
- each shared name definition (`$defs/model`, `$defs/new_value`, ...): what a
  field of that type `references` or `defines`.
`validate`, the runner's phase of an error, the fixtures a case is sent with
and the documentation check all read those annotations through this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterator

from ccts_common import schemas

CASE_SCHEMA = "case.schema.json"
ANNOTATION = "x-ccts"
# What a name field can stand for (the `references` / `defines` of $defs).
NAME_KINDS = ("model", "parameter", "value", "tracker", "fixture", "api", "observation")


@dataclass(frozen=True)
class Term:
    """A step or an observation kind: its phase, capabilities, a program that
    ends with it (every adapter must run it), and its body's schema."""
    name: str
    phase: str
    needs: tuple[str, ...]
    example: list[Any] = field(repr=False, compare=False)
    schema: dict[str, Any] = field(repr=False, compare=False)

    def fields(self) -> list[str]:
        return list(self.schema.get("properties", {})) if isinstance(self.schema, dict) else []


@dataclass(frozen=True)
class NameUse:
    """A field of a step that references or defines a name: `path` is its field path."""
    path: str
    role: str  # "references" or "defines"
    kind: str  # one of NAME_KINDS
    name: str
    annotation: dict[str, Any]


class Vocabulary:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.defs: dict[str, Any] = schema["$defs"]
        step_schemas = self.defs["step"]["properties"]
        self.steps: dict[str, Term] = {name: self._term(name, s, "build") for name, s in step_schemas.items()}
        observe = step_schemas["observe"]
        self.observations: dict[str, Term] = {
            kind: self._term(kind, s, self.steps["observe"].phase)
            for kind, s in observe["properties"].items() if kind != "as"}
        self.expectations: list[str] = list(self.defs["expectation"]["properties"])
        # Steps whose `do` holds steps (the schema says `$ref: #/$defs/steps`).
        self.nesting: tuple[str, ...] = tuple(
            name for name, s in step_schemas.items()
            if s.get("properties", {}).get("do", {}).get("$ref") == "#/$defs/steps")

    @staticmethod
    def _term(name: str, schema: dict[str, Any], default_phase: str) -> Term:
        x = schema.get(ANNOTATION, {})
        return Term(name, x.get("phase", default_phase), tuple(x.get("needs", ())), x.get("example", []), schema)

    # -- what a step is ---------------------------------------------------
    def observation_kind(self, body: dict[str, Any]) -> str | None:
        kinds = [k for k in body if k != "as"]
        return kinds[0] if len(kinds) == 1 else None

    def phase(self, step: str, body: Any) -> str:
        """The phase an error of this step is reported in (spec/ADAPTERS.md, "Errors")."""
        if step == "observe" and isinstance(body, dict):
            kind = self.observation_kind(body)
            if kind in self.observations:
                return self.observations[kind].phase
        term = self.steps.get(step)
        return term.phase if term else "build"

    def program_needs(self, steps: Any) -> set[str]:
        """Every capability a list of steps needs (nested steps included), `fixtures` always."""
        needed = {"fixtures"}
        for _, name, body in walk_steps(steps):
            needed |= self.needs(name, body)
        return needed

    def needs(self, step: str, body: Any) -> set[str]:
        """Capabilities one step needs: its own, its observation kind's, a built-in API's."""
        needed = set(self.steps[step].needs) if step in self.steps else set()
        if step == "observe" and isinstance(body, dict):
            kind = self.observation_kind(body)
            if kind in self.observations:
                needed |= set(self.observations[kind].needs)
        for use in self.name_uses(step, body, ""):
            builtin = use.annotation.get("builtin", {})
            if use.role == "references" and use.name in builtin:
                needed.add(builtin[use.name])
        return needed

    # -- names a step uses ------------------------------------------------
    def name_uses(self, step: str, body: Any, path: str) -> list[NameUse]:
        """Every field of the step's body that references or defines a name, in
        field order; nested steps (`do` of raises, repeat, track) are not included."""
        term = self.steps.get(step)
        if term is None:
            return []
        out: list[NameUse] = []
        self._walk(term.schema, body, path, out)
        seen: set[tuple[str, str]] = set()
        unique = []
        for use in out:  # a oneOf may reach one field twice
            if (use.path, use.role) not in seen:
                seen.add((use.path, use.role))
                unique.append(use)
        return unique

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema with its local `$ref` chain merged in, annotations of the nearest one first."""
        merged = dict(schema)
        while "$ref" in merged:
            ref = merged.pop("$ref")
            target = self.defs[ref.rsplit("/", 1)[-1]]
            if ANNOTATION in merged and ANNOTATION in target:
                annotation = {**target[ANNOTATION], **merged[ANNOTATION]}
            else:
                annotation = merged.get(ANNOTATION, target.get(ANNOTATION))
            merged = {**target, **merged}
            if annotation is not None:
                merged[ANNOTATION] = annotation
        return merged

    def _walk(self, schema: Any, value: Any, path: str, out: list[NameUse]) -> None:
        if not isinstance(schema, dict):
            return
        if schema.get("$ref") == "#/$defs/steps":
            return  # nested steps are steps of their own (walk_steps)
        schema = self._resolve(schema)
        x = schema.get(ANNOTATION, {})
        for role in ("references", "defines"):
            if role in x and isinstance(value, str):
                out.append(NameUse(path, role, x[role], value, x))
        for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
            self._walk(branch, value, path, out)
        if isinstance(value, dict):
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                sub = properties.get(key, extra if isinstance(extra, dict) else None)
                self._walk(sub, item, f"{path}.{key}" if path else key, out)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self._walk(schema["items"], item, f"{path}[{i}]", out)


@lru_cache(maxsize=None)
def vocabulary() -> Vocabulary:
    return Vocabulary(schemas.document(CASE_SCHEMA))


def walk_steps(steps: Any, path: str = "steps") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(field path, step name, body) of every step, nested `do` steps right after their parent."""
    for i, step in enumerate(steps or []):
        if isinstance(step, dict) and len(step) == 1:
            (name, body), = step.items()
            if isinstance(body, dict):
                yield f"{path}[{i}].{name}", name, body
                if isinstance(body.get("do"), list) and name in vocabulary().nesting:
                    yield from walk_steps(body["do"], f"{path}[{i}].{name}.do")


def step_at(steps: Any, index_path: str) -> tuple[str, Any] | None:
    """The step an error's `step` names ("3", "2.do.1"), as (name, body), or None."""
    current: Any = steps
    found = None
    parts = str(index_path).split(".") if index_path not in (None, "") else []
    i = 0
    while i < len(parts):
        if not isinstance(current, list) or not parts[i].isdigit() or int(parts[i]) >= len(current):
            return None
        step = current[int(parts[i])]
        if not isinstance(step, dict) or len(step) != 1:
            return None
        (name, body), = step.items()
        found = (name, body)
        i += 1
        if i < len(parts):
            if parts[i] != "do" or not isinstance(body, dict):
                return None
            current = body.get("do")
            i += 1
    return found


def phase_of_error(steps: Any, index_path: Any) -> str:
    """The phase of an error raised at step `index_path` of a case (protocol 2: the
    runner derives it; "" or an unknown path is the case's setup, `build`)."""
    found = step_at(steps, "" if index_path is None else str(index_path))
    return vocabulary().phase(*found) if found else "build"


def fixture_names_in(steps: Any) -> list[str]:
    """Fixtures a case's steps name (nested `do` included), in order of first use."""
    names: list[str] = []
    vocab = vocabulary()
    for path, name, body in walk_steps(steps):
        for use in vocab.name_uses(name, body, path):
            if use.kind == "fixture" and use.role == "references" and use.name not in names:
                names.append(use.name)
    return names
