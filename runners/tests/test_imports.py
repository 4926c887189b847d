"""No import circles among the project's Python modules (ccts_common/, runners/,
reports/), counting imports inside functions as well as at module level: a circle
that a deferred import hides today breaks as soon as someone hoists it. Between
the packages themselves the direction is one way too: runners/ uses reports/,
both use ccts_common/, and nothing is imported back."""
from __future__ import annotations

import ast
import tempfile
import unittest
from pathlib import Path

from runners.tests.support import ROOT

PACKAGES = ("ccts_common", "runners", "reports")
Graph = dict[str, set[str]]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its __init__.py)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(root, path)] = path
    return found


def ancestors(name: str) -> list[str]:
    """a.b.c -> [a, a.b]: the packages Python initialises before a.b.c."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules that module `name` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                # `from pkg import mod` imports a module; `from mod import name` an attribute of mod.
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    edges = {target for target in targets if target in known and target != name}
    for target in targets:
        # Importing a.b.c runs a and a.b first, unless they are the importer's own
        # packages (already initialised, or being initialised, when it runs).
        edges.update(p for p in ancestors(target) if p in known and p not in ancestors(name) + [name])
    return edges


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> Graph:
    known = modules(root, packages)
    return {name: imported(name, path, known) for name, path in known.items()}


def package_graph(graph: Graph) -> Graph:
    """The graph between top-level packages (edges inside one package left out)."""
    top: Graph = {}
    for source, targets in graph.items():
        top.setdefault(source.split(".")[0], set()).update(
            t.split(".")[0] for t in targets if t.split(".")[0] != source.split(".")[0])
    return top


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first, deterministic order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


class ImportGraph(unittest.TestCase):
    def test_the_modules_import_no_circle(self) -> None:
        cycle = find_cycle(import_graph(ROOT))
        self.assertIsNone(cycle, "import circle: " + " -> ".join(cycle or []))

    def test_the_packages_import_one_way(self) -> None:
        packages = package_graph(import_graph(ROOT))
        cycle = find_cycle(packages)
        self.assertIsNone(cycle, "packages import each other: " + " -> ".join(cycle or []))
        self.assertEqual(packages["ccts_common"], set(), "ccts_common imports nothing else of the project")
        self.assertNotIn("runners", packages["reports"])

    def test_the_graph_sees_deferred_and_relative_imports(self) -> None:
        graph = import_graph(ROOT)
        self.assertIn("runners.suite", graph["runners.cli"])         # from .suite import ...
        self.assertIn("runners.golden", graph["runners.cli"])        # from . import golden, in a function
        self.assertIn("reports", graph["runners.execute"])           # import reports, in a function
        self.assertIn("ccts_common.portable_values", graph["reports.values"])
        self.assertIn("ccts_common", graph["reports.values"])        # the package runs first

    def test_a_circle_through_a_function_level_import_is_found(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            package = Path(tmp) / "pkg"
            package.mkdir()
            (package / "__init__.py").write_text("")
            (package / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
            (package / "b.py").write_text("def g():\n    from . import a\n    return a\n")
            (package / "c.py").write_text("import pkg.a\n")
            graph = import_graph(Path(tmp), ("pkg",))
        self.assertEqual(graph["pkg.c"], {"pkg.a"})
        self.assertEqual(find_cycle(graph), ["pkg.a", "pkg.b", "pkg.a"])


if __name__ == "__main__":
    unittest.main()
