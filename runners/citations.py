"""Rule IDs that implementations cite in their sources (the reference's C++ and the
PyTorch adapter): each must be a rule of spec/*.md, so that a comment naming a rule
names one that exists. `validate` reports every other one as file:line."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

from .suite import ROOT

# A rule ID (spec/README.md: AREA-TOPIC-NNN), or a family of them (AREA-TOPIC-*).
# Segments after the first start with a letter, so UTF-8, SHA-256 or ISO-8859-1
# are not taken for citations.
CITATION = re.compile(r"(?<![A-Za-z0-9_-])([A-Z][A-Z0-9]*(?:-[A-Z][A-Z0-9]*)+-(?:[0-9]+|\*))(?![A-Za-z0-9_])")
# C++ sources and headers, Python, and the text files beside them (expected-failures.txt).
SOURCE_SUFFIXES = frozenset({".cpp", ".cc", ".cxx", ".h", ".hpp", ".hh", ".inl", ".ipp", ".cu", ".cuh",
                             ".py", ".txt", ".md"})


def source_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
            yield path


def citations(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, cited ID) of every rule citation in one file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    for number, line in enumerate(text.splitlines(), 1):
        for match in CITATION.finditer(line):
            yield number, match.group(1)


def is_rule(cited: str, rules: Iterable[str]) -> bool:
    """An exact rule ID, or a family (`AREA-TOPIC-*`) that at least one rule belongs to."""
    if cited.endswith("*"):
        prefix = cited[:-1]
        return any(rule.startswith(prefix) for rule in rules)
    return cited in rules


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def check_citations(directories: Iterable[Path], rules: Iterable[str]) -> list[str]:
    """`file:line: ...` for every cited ID that is not a rule, and for a folder that does not exist."""
    known = set(rules)
    errors: list[str] = []
    for directory in directories:
        if not directory.is_dir():
            errors.append(f"{directory}: sources folder (--sources-dir) does not exist")
            continue
        for path in source_files(directory):
            for number, cited in citations(path):
                if not is_rule(cited, known):
                    what = "matches no rule" if cited.endswith("*") else "is not a rule"
                    errors.append(f"{relative(path)}:{number}: cites {cited}, which {what} of spec/*.md")
    return errors
