"""The suite on disk: cases (conformance/<area>/*.yaml), fixtures (fixtures/*.yaml)
and rules (spec/*.md). Loading only; validate.py judges meaning."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml

# Defined in ccts_common, so that a broken schema file is a SuiteError too; the
# runner's modules import it from here.
from ccts_common.errors import SuiteError

from .vocabulary import fixture_names_in

ROOT = Path(__file__).resolve().parent.parent
# The protocol the runner speaks (spec/ADAPTERS.md); an adapter that refuses it
# is offered the older ones still accepted, newest first. Protocol 1 is
# deprecated: accepted until the suite's 1.0.0.
PROTOCOL_VERSION = 2
ACCEPTED_PROTOCOLS = (2, 1)
DEFAULT_WORLD_SIZES = [1, 2, 4]
DEFAULT_BACKENDS = ["gloo", "nccl"]

RULE_LINE = re.compile(r"^- \*\*([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+)\*\* (.+)$")
# The suite version is written once, as the VERSION of CMake's project(ccts ...):
# the reference's adapter gets it from there too (PROJECT_VERSION).
PROJECT_FILE = ROOT / "CMakeLists.txt"
PROJECT_LINE = re.compile(r"^\s*project\(\s*ccts\b[^)]*?\bVERSION\s+([0-9]+\.[0-9]+\.[0-9]+)\b", re.M)
# Where implementations cite rules (validate checks that each cited rule exists).
SOURCES_DIRS = (ROOT / "reference", ROOT / "runners" / "adapters")


@lru_cache(maxsize=None)
def suite_version(project_file: Path = PROJECT_FILE) -> str:
    """The suite version: the VERSION of `project(ccts VERSION X.Y.Z ...)` in the top-level CMakeLists.txt."""
    try:
        text = project_file.read_text(encoding="utf-8")
    except OSError as e:
        raise SuiteError(f"{project_file}: cannot be read: {e.strerror}; the suite version is the VERSION "
                         "of its project(ccts ...)") from None
    match = PROJECT_LINE.search(text)
    if not match:
        raise SuiteError(f"{project_file}: no 'project(ccts VERSION X.Y.Z ...)': the suite version is written there")
    return match.group(1)


@dataclass
class Case:
    data: dict[str, Any]
    file: Path
    area: str

    @property
    def id(self) -> str:
        return str(self.data.get("id", ""))

    @property
    def world_sizes(self) -> list[int]:
        return list(self.data.get("world_sizes", DEFAULT_WORLD_SIZES))

    @property
    def backends(self) -> list[str]:
        return list(self.data.get("backends", DEFAULT_BACKENDS))

    @property
    def needs(self) -> list[str]:
        return list(self.data.get("needs", []))

    @property
    def requirements(self) -> list[str]:
        return list(self.data.get("requirements", []))

    def relative_file(self) -> str:
        try:
            return str(self.file.resolve().relative_to(ROOT))
        except ValueError:
            return str(self.file)


@dataclass
class Rule:
    id: str
    text: str
    chapter: str
    file: str


@dataclass
class Suite:
    cases_dir: Path = ROOT / "conformance"
    fixtures_dir: Path = ROOT / "fixtures"
    spec_dir: Path = ROOT / "spec"
    sources_dirs: list[Path] = field(default_factory=lambda: list(SOURCES_DIRS))
    _fixtures: dict[str, dict[str, Any]] | None = field(default=None, repr=False)

    def case_files(self) -> list[Path]:
        if not self.cases_dir.is_dir():
            return []
        return sorted(p for p in self.cases_dir.glob("*/*.yaml"))

    def load_cases(self) -> list[Case]:
        return [load_case(path) for path in self.case_files()]

    def load_cases_or_stand_ins(self) -> tuple[list[Case], dict[Path, str]]:
        """Every case file as its case; a file that is not one (unreadable, not YAML,
        empty, not a mapping) as a stand-in named for the file (id <area>.<stem>, as
        case ids are), with why, so that a run reports it and goes on."""
        cases, broken = [], {}
        for path in self.case_files():
            try:
                cases.append(load_case(path))
            except SuiteError as e:
                broken[path] = str(e)
                cases.append(Case(data={"id": f"{path.parent.name}.{path.stem}"}, file=path, area=path.parent.name))
        return cases, broken

    def fixtures(self) -> dict[str, dict[str, Any]]:
        """Every fixture by name, resolved: {name, root, input, source, classes, file}."""
        if self._fixtures is None:
            self._fixtures = load_fixtures(self.fixtures_dir)
        return self._fixtures

    def rules(self) -> dict[str, Rule]:
        return load_rules(self.spec_dir)


def suite_from(args: argparse.Namespace) -> Suite:
    """The suite the command line names (--cases-dir, --fixtures-dir, --spec-dir, --sources-dir);
    here, not in cli.py, so that the verbs' modules need not import the command line."""
    suite = Suite()
    if getattr(args, "cases_dir", None):
        suite.cases_dir = Path(args.cases_dir)
    if getattr(args, "fixtures_dir", None):
        suite.fixtures_dir = Path(args.fixtures_dir)
    if getattr(args, "spec_dir", None):
        suite.spec_dir = Path(args.spec_dir)
    if getattr(args, "sources_dir", None):
        suite.sources_dirs = [Path(d) for d in args.sources_dir]
    return suite


def load_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML: {e}") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot be read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None


def load_case(path: Path) -> Case:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a case file holds one mapping (id, title, steps, expect, ...)")
    return Case(data=data, file=path, area=path.parent.name)


def load_fixtures(directory: Path) -> dict[str, dict[str, Any]]:
    fixtures: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        doc = load_yaml(path)
        if not isinstance(doc, dict):
            raise SuiteError(f"{path}: expected a mapping with classes and fixtures")
        classes = doc.get("classes") or {}
        for index, fixture in enumerate(doc.get("fixtures") or []):
            if not isinstance(fixture, dict) or "name" not in fixture:
                raise SuiteError(f"{path}: fixtures[{index}].name: is required")
            name = fixture["name"]
            if name in fixtures:
                raise SuiteError(f"{path}: fixture '{name}': name: also defined in {fixtures[name]['file']}")
            resolved = dict(fixture)
            resolved["classes"] = reachable_classes(fixture.get("root"), classes)
            resolved["file"] = str(path)
            fixtures[name] = resolved
    return fixtures


def class_references(spec: Any) -> Iterator[str]:
    """Class names a module spec (or a class definition's members) refers to."""
    if isinstance(spec, str):
        yield spec
    elif isinstance(spec, dict):
        if isinstance(spec.get("class"), str):
            yield spec["class"]
        for key in ("items", "module", "module_list_attribute", "members"):
            value = spec.get(key)
            if isinstance(value, list):
                for item in value:
                    yield from class_references(item.get("module") if isinstance(item, dict) and "key" in item else item)
            elif isinstance(value, dict) or (key == "module" and isinstance(value, str)):
                yield from class_references(value)


def reachable_classes(root: Any, classes: dict[str, Any]) -> dict[str, Any]:
    """Only the classes the root uses, in file order, so adapters get what they need."""
    seen: set[str] = set()
    todo = list(class_references(root))
    while todo:
        name = todo.pop()
        if name in seen or name not in classes:
            continue
        seen.add(name)
        todo.extend(class_references(classes[name]))
    return {name: value for name, value in classes.items() if name in seen}


def load_rules(spec_dir: Path) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for path in sorted(spec_dir.glob("*.md")):
        chapter = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("# ") and not chapter:
                chapter = line[2:].strip()
            match = RULE_LINE.match(line.strip())
            if match:
                rule_id, text = match.groups()
                if rule_id in rules:
                    raise SuiteError(f"{path}: rule {rule_id}: also declared in {rules[rule_id].file}")
                try:
                    rel = str(path.resolve().relative_to(ROOT))
                except ValueError:
                    rel = str(path)
                rules[rule_id] = Rule(rule_id, text, chapter, rel)
    return rules


def resolved_fixtures(case: Case, suite: Suite) -> dict[str, Any]:
    available = suite.fixtures()
    out = {}
    for name in fixture_names_in(case.data.get("steps")):
        if name not in available:
            raise SuiteError(f"{case.relative_file()}: case {case.id}: steps: unknown fixture '{name}'")
        fixture = {k: v for k, v in available[name].items() if k != "file"}
        out[name] = fixture
    return out
