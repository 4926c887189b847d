"""`validate`: every case and fixture against its schema and its meaning, and every
rule the implementations' sources cite against spec/*.md. Each error names the
file, the case and the field (for a source: the file and line)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ccts_common import schemas

from .citations import check_citations
from .suite import Case, Suite, SuiteError, load_case
from .vocabulary import NAME_KINDS, NameUse, vocabulary, walk_steps

GOLDEN_FORMAT = "ccts-golden/1"
# How validate names what a reference should have been defined by.
DEFINED_BY = {"model": "a model built before this step", "parameter": "in a model built before this step",
              "value": "a value defined before this step", "tracker": "a tracker created before this step",
              "api": "an API defined before this step or built in"}


def field_path(path: Any) -> str:
    return schemas.field_path(path, empty="(case)")


class Validator:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.errors: list[str] = []
        import jsonschema  # noqa: F401  validate cannot do without it (the runner can)

        self.case_schema = schemas.validator("case.schema.json")

    def error(self, case: Case | None, file: Path, field: str, message: str) -> None:
        rel = case.relative_file() if case else str(file)
        label = f"case {case.id}" if case and case.id else "case ?"
        self.errors.append(f"{rel}: {label}: field {field}: {message}")

    def run(self) -> list[str]:
        try:
            fixtures = self.suite.fixtures()
            rules = self.suite.rules()
        except SuiteError as e:
            return [str(e)]
        self.errors.extend(check_citations(self.suite.sources_dirs, rules))
        self.check_fixture_schema()
        self.check_fixture_classes()
        seen: dict[str, Path] = {}
        for path in self.suite.case_files():
            try:
                case = load_case(path)
            except SuiteError as e:
                self.errors.append(str(e))
                continue
            self.check_case(case, fixtures, rules, seen)
            self.check_golden_files(case)
        return self.errors

    def check_fixture_schema(self) -> None:
        if not (schemas.SCHEMA_DIR / "fixture.schema.json").exists():
            return
        validator = schemas.validator("fixture.schema.json")
        import yaml
        for file in sorted(self.suite.fixtures_dir.glob("*.yaml")):
            doc = yaml.safe_load(file.read_text())
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                self.errors.append(f"{file}: field {field_path(err.absolute_path)}: {err.message}")

    def check_case(self, case: Case, fixtures: dict[str, Any], rules: dict[str, Any], seen: dict[str, Path]) -> None:
        data = case.data
        schema_errors = sorted(self.case_schema.iter_errors(data), key=lambda e: list(e.absolute_path))
        for err in schema_errors:
            self.error(case, case.file, field_path(err.absolute_path), err.message[:300])
        if not isinstance(data.get("id"), str):
            return
        if case.id in seen:
            self.error(case, case.file, "id", f"duplicate id, also in {seen[case.id]}")
        seen[case.id] = case.file
        if case.id.split(".", 1)[0] != case.area:
            self.error(case, case.file, "id", f"must start with its folder's area '{case.area}.'")
        if schema_errors:
            return  # rules, names, needs and expectations are checked in a case of the schema's shape
        for i, rule in enumerate(data.get("requirements") or []):
            if rule not in rules:
                self.error(case, case.file, f"requirements[{i}]", f"unknown rule {rule} (not declared in spec/*.md)")
        observations = self.check_names_and_needs(case, fixtures)
        for i, expectation in enumerate(data.get("expect") or []):
            if not isinstance(expectation, dict) or len(expectation) != 1:
                continue
            (check, body), = expectation.items()
            names = [body] if isinstance(body, str) else [body.get(k) for k in ("actual", "expected") if isinstance(body, dict)]
            for ref in names:
                if isinstance(ref, str) and ref not in observations:
                    self.error(case, case.file, f"expect[{i}].{check}", f"no step observes '{ref}'")

    def check_names_and_needs(self, case: Case, fixtures: dict[str, Any]) -> set[str]:
        """Every name a step references is defined by an earlier step (the schema's
        `x-ccts` says which fields reference or define what); the case `needs`
        every capability its steps need. Returns the observations the steps record."""
        vocab = vocabulary()
        defined: dict[str, set[str]] = {kind: set() for kind in NAME_KINDS}
        for path, name, body in walk_steps(case.data.get("steps")):
            uses = vocab.name_uses(name, body, path)
            for use in uses:
                if use.role == "references":
                    self.check_reference(case, use, defined, fixtures)
            for use in uses:
                if use.role == "defines":
                    defined[use.kind].add(use.name)
        declared = case.data.get("needs") if isinstance(case.data.get("needs"), list) else []
        missing = sorted(vocab.program_needs(case.data.get("steps")) - set(declared) - {"fixtures"})
        if missing:
            self.error(case, case.file, "needs", f"the steps need {missing} (spec/CASES.md, \"Steps\"); "
                       f"the case declares {declared}")
        return defined["observation"]

    def check_reference(self, case: Case, use: NameUse, defined: dict[str, set[str]],
                        fixtures: dict[str, Any]) -> None:
        if use.kind == "fixture":
            if use.name not in fixtures:
                self.error(case, case.file, use.path, f"unknown fixture '{use.name}'")
            return
        if use.kind == "observation":
            return  # checked against the expectations, below
        if use.kind in ("model", "parameter"):
            ok = use.name.split(".")[0] in defined["model"]
        elif use.kind == "api":
            ok = use.name in defined["api"] or use.name in use.annotation.get("builtin", {})
        else:
            ok = use.name in defined[use.kind]
        if not ok:
            self.error(case, case.file, use.path, f"'{use.name}' is not {DEFINED_BY[use.kind]}")

    def check_golden_files(self, case: Case) -> None:
        """A golden file (relative to the case) exists, names what produced it, and holds one
        observation (adapter-messages.schema.json); runners/golden.py writes them."""
        for i, expectation in enumerate(case.data.get("expect") or []):
            body = expectation.get("golden") if isinstance(expectation, dict) else None
            if not isinstance(body, dict) or not isinstance(body.get("file"), str):
                continue
            field, path = f"expect[{i}].golden.file", case.file.parent / body["file"]
            try:
                golden = json.loads(path.read_text(encoding="utf-8"))
            except OSError as e:
                self.error(case, case.file, field, f"golden file {path} cannot be read: {e.strerror}")
                continue
            except json.JSONDecodeError as e:
                self.error(case, case.file, field, f"golden file {path} is not JSON: {e}")
                continue
            if not isinstance(golden, dict) or golden.get("format") != GOLDEN_FORMAT:
                self.error(case, case.file, field, f"golden file {path} is not {GOLDEN_FORMAT} (see spec/CASES.md)")
                continue
            producer = golden.get("produced_by")
            if not isinstance(producer, dict) or not producer.get("name") or not producer.get("version"):
                self.error(case, case.file, field, f"golden file {path}: produced_by needs the name and version "
                           "of the implementation that produced it")
            for problem in schemas.problems(golden.get("observation"), "adapter-messages.schema.json", "observation",
                                            limit=3):
                self.error(case, case.file, field, f"golden file {path}: observation: {problem}")

    def check_fixture_classes(self) -> None:
        """Every class a fixture file names is built-in or defined in that file (spec/fixtures.md)."""
        import yaml

        for file in sorted(self.suite.fixtures_dir.glob("*.yaml")):
            doc = yaml.safe_load(file.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                continue
            classes = doc.get("classes") if isinstance(doc.get("classes"), dict) else {}
            places = [(f"fixtures[{i}].root", f.get("root"), f"fixture '{f.get('name')}'")
                      for i, f in enumerate(doc.get("fixtures") or []) if isinstance(f, dict)]
            for name, definition in classes.items():
                members = definition.get("members") if isinstance(definition, dict) else None
                base = definition.get("base", "Module") if isinstance(definition, dict) else "Module"
                for i, member in enumerate(members if isinstance(members, list) else []):
                    if isinstance(member, dict) and base in ("ModuleList", "ModuleDict"):
                        self.check_container_member(file, name, base, i, member)
                    if isinstance(member, dict):
                        for key in ("module", "module_list_attribute"):
                            if key in member:
                                places.append((f"classes.{name}.members[{i}].{key}", member[key], f"class '{name}'"))
            for field, spec, owner in places:
                for where, class_name in class_names(spec, field):
                    if class_name not in BUILTIN_CLASSES and class_name not in classes:
                        self.errors.append(f"{file}: {owner}: field {where}: unknown class '{class_name}' "
                                           f"(neither built-in nor a class of this file)")

    def check_container_member(self, file: Path, name: str, base: str, i: int, member: dict[str, Any]) -> None:
        """A ModuleList or ModuleDict subclass holds only child modules, a list's named 0, 1, ... in order."""
        field = f"classes.{name}.members[{i}]"
        if "module" not in member:
            self.errors.append(f"{file}: class '{name}': field {field}: a {base} subclass has only module members")
        elif base == "ModuleList" and member.get("name") != str(i):
            self.errors.append(f"{file}: class '{name}': field {field}.name: a ModuleList subclass names its "
                               f"members 0, 1, ... in order (expected '{i}')")


BUILTIN_CLASSES = ("Linear", "ReLU", "LayerNorm", "BatchNorm1d", "Sequential", "ModuleList", "ModuleDict")


def class_names(spec: Any, field: str) -> Iterator[tuple[str, str]]:
    """(field path, class name) of every class a module spec (or a list of them) names."""
    if isinstance(spec, str):
        if spec != "$items":
            yield field, spec
    elif isinstance(spec, list):
        for i, item in enumerate(spec):
            yield from class_names(item, f"{field}[{i}]")
    elif isinstance(spec, dict) and isinstance(spec.get("class"), str):
        yield f"{field}.class", spec["class"]
        for i, item in enumerate(spec.get("items") if isinstance(spec.get("items"), list) else []):
            if spec["class"] == "ModuleDict" and isinstance(item, dict):
                yield from class_names(item.get("module"), f"{field}.items[{i}].module")
            else:
                yield from class_names(item, f"{field}.items[{i}]")


def case_problems(suite: Suite, cases: list[Case]) -> dict[Path, list[str]]:
    """validate's checks of these cases (schema, names, needs, rules, duplicate ids among
    them), by case file: what `run` reports as `error` instead of running (issue of a
    case, not of the implementation). Empty when jsonschema is missing."""
    try:
        validator = Validator(suite)
        fixtures, rules = suite.fixtures(), suite.rules()
    except (ImportError, SuiteError):
        return {}
    seen: dict[str, Path] = {}
    problems: dict[Path, list[str]] = {}
    for case in cases:
        validator.errors = []
        validator.check_case(case, fixtures, rules, seen)
        if validator.errors:
            problems[case.file] = list(validator.errors)
    return problems


def validate(suite: Suite) -> list[str]:
    return Validator(suite).run()
