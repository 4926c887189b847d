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

# Observations each observe kind produces come from `observe`/`raises`; these
# steps define model or value names.
GOLDEN_FORMAT = "ccts-golden/1"
DEFINES_MODEL = ("build", "copy", "apply")
DEFINES_VALUE = ("batch", "input", "slice", "forward", "mse_loss")
# Step fields that name a model (`m` or a submodule `m.sub`), per step.
MODEL_FIELDS = {"forward": ("model",), "zero_grad": ("model",), "sgd_step": ("model",), "copy": ("from",),
                "load_state_dict": ("model", "from"), "set_requires_gradient_sync": ("model",), "to_device": ("model",),
                "unshard": ("model",), "reshard": ("model",)}
# Step fields that name a value defined before.
VALUE_FIELDS = {"mse_loss": ("input", "target")}
# apply kwargs whose items are module or parameter references (`m.path` / `m.path.name`).
APPLY_REF_KWARGS = ("ignored_modules", "ignored_params")
# Observation kinds that name something other than a model.
OBSERVES_VALUE = ("value",)
OBSERVES_TRACKER = ("tracker_events", "tracker_state")


def field_path(path: Any) -> str:
    return schemas.field_path(path, empty="(case)")


def walk_steps(steps: Any, path: str = "steps") -> Iterator[tuple[str, str, dict[str, Any]]]:
    for i, step in enumerate(steps or []):
        if isinstance(step, dict) and len(step) == 1:
            (name, body), = step.items()
            if isinstance(body, dict):
                yield f"{path}[{i}].{name}", name, body
                if isinstance(body.get("do"), list):
                    yield from walk_steps(body["do"], f"{path}[{i}].{name}.do")


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
        for err in sorted(self.case_schema.iter_errors(data), key=lambda e: list(e.absolute_path)):
            self.error(case, case.file, field_path(err.absolute_path), err.message[:300])
        if not isinstance(data.get("id"), str):
            return
        if case.id in seen:
            self.error(case, case.file, "id", f"duplicate id, also in {seen[case.id]}")
        seen[case.id] = case.file
        if case.id.split(".", 1)[0] != case.area:
            self.error(case, case.file, "id", f"must start with its folder's area '{case.area}.'")
        for i, rule in enumerate(data.get("requirements") or []):
            if isinstance(rule, str) and rule not in rules:
                self.error(case, case.file, f"requirements[{i}]", f"unknown rule {rule} (not declared in spec/*.md)")
        models: set[str] = set()
        values: set[str] = set()
        trackers: set[str] = set()
        observations: set[str] = set()
        for path, name, body in walk_steps(data.get("steps")):
            if name in ("build", "input") and isinstance(body.get("fixture"), str) and body["fixture"] not in fixtures:
                self.error(case, case.file, f"{path}.fixture", f"unknown fixture '{body['fixture']}'")
            for key in MODEL_FIELDS.get(name, ()):
                ref = body.get(key)
                if isinstance(ref, str) and ref.split(".")[0] not in models:
                    self.error(case, case.file, f"{path}.{key}", f"'{ref}' is not a model built before this step")
            for key in VALUE_FIELDS.get(name, ()):
                ref = body.get(key)
                if isinstance(ref, str) and ref not in values:
                    self.error(case, case.file, f"{path}.{key}", f"'{ref}' is not a value defined before this step")
            if name == "apply":
                targets = body.get("to") if isinstance(body.get("to"), list) else [body.get("to")]
                for ref in targets:
                    if isinstance(ref, str) and ref.split(".")[0] not in models:
                        self.error(case, case.file, f"{path}.to", f"'{ref}' is not in a model built before this step")
                kwargs = body.get("kwargs") if isinstance(body.get("kwargs"), dict) else {}
                for key in APPLY_REF_KWARGS:
                    refs = kwargs.get(key) if isinstance(kwargs.get(key), list) else []
                    for i, ref in enumerate(refs):
                        if isinstance(ref, str) and ref.split(".")[0] not in models:
                            self.error(case, case.file, f"{path}.kwargs.{key}[{i}]",
                                       f"'{ref}' is not in a model built before this step")
            if name == "observe":
                for key, ref in body.items():
                    if key in ("as", "probes"):
                        continue
                    pool = values if key in OBSERVES_VALUE else trackers if key in OBSERVES_TRACKER else models
                    for field, one in observed_refs(key, ref):
                        if one.split(".")[0] not in pool and one not in pool:
                            self.error(case, case.file, f"{path}.{field}", f"'{one}' is not defined before this step")
                observations.add(body.get("as"))
            if name == "raises":
                observations.add(body.get("as"))
            if name == "define_api":
                for action in body.get("do") or []:
                    if isinstance(action, dict) and isinstance(action.get("record_registry"), dict):
                        observations.add(action["record_registry"].get("as"))
            if name in DEFINES_MODEL and isinstance(body.get("as"), str):
                models.add(body["as"])
            if name in DEFINES_VALUE and isinstance(body.get("as"), str):
                values.add(body["as"])
            if name == "tracker" and isinstance(body.get("as"), str):
                trackers.add(body["as"])
        for i, expectation in enumerate(data.get("expect") or []):
            if not isinstance(expectation, dict) or len(expectation) != 1:
                continue
            (check, body), = expectation.items()
            names = [body] if isinstance(body, str) else [body.get(k) for k in ("actual", "expected") if isinstance(body, dict)]
            for ref in names:
                if isinstance(ref, str) and ref not in observations:
                    self.error(case, case.file, f"expect[{i}].{check}", f"no step observes '{ref}'")

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
                for i, member in enumerate(members if isinstance(members, list) else []):
                    if isinstance(member, dict):
                        for key in ("module", "module_list_attribute"):
                            if key in member:
                                places.append((f"classes.{name}.members[{i}].{key}", member[key], f"class '{name}'"))
            for field, spec, owner in places:
                for where, class_name in class_names(spec, field):
                    if class_name not in BUILTIN_CLASSES and class_name not in classes:
                        self.errors.append(f"{file}: {owner}: field {where}: unknown class '{class_name}' "
                                           f"(neither built-in nor a class of this file)")


def observed_refs(key: str, ref: Any) -> Iterator[tuple[str, str]]:
    """(field path, reference) of the names an observe kind reads: a string, a list of module
    references (registry_identity), or an object's `module`/`modules` (state, state_identity,
    managed_parameters). Its `api` is a name of another kind and is not checked here."""
    if isinstance(ref, str):
        yield key, ref
    elif isinstance(ref, list):
        yield from ((f"{key}[{i}]", r) for i, r in enumerate(ref) if isinstance(r, str))
    elif isinstance(ref, dict):
        if isinstance(ref.get("module"), str):
            yield f"{key}.module", ref["module"]
        modules = ref.get("modules") if isinstance(ref.get("modules"), list) else []
        yield from ((f"{key}.modules[{i}]", r) for i, r in enumerate(modules) if isinstance(r, str))


BUILTIN_CLASSES = ("Linear", "ReLU", "Sequential", "ModuleList", "ModuleDict")


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


def validate(suite: Suite) -> list[str]:
    return Validator(suite).run()
