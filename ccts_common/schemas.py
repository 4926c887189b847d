"""The one loader of JSON Schemas, for the runner (cases, fixtures, adapter messages)
and the report writers (report.json).

Every schema of a folder is loaded once; references between the files of that
folder (`fixture.schema.json#/$defs/...`) resolve locally, by each schema's
`$id` or, for a schema without one, by its file's URI, so nothing is fetched.
"""
from __future__ import annotations

import json
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import SuiteError

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "spec" / "schema"


class SchemaFileError(SuiteError):
    """A schema file that is missing, unreadable or not a valid JSON Schema."""


@lru_cache(maxsize=None)
def _folder(directory: Path) -> dict[str, dict[str, Any]]:
    """Every schema of `directory` by file name."""
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.schema.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise SchemaFileError(f"{path}: not a readable JSON Schema: {e}") from None
        if not isinstance(document, dict):
            raise SchemaFileError(f"{path}: not a JSON Schema (a schema is a JSON object)")
        documents[path.name] = document
    return documents


def _base_uri(directory: Path, name: str, document: dict[str, Any]) -> str:
    return document["$id"] if isinstance(document.get("$id"), str) else (directory / name).resolve().as_uri()


def document(name: str, directory: Path = SCHEMA_DIR) -> dict[str, Any]:
    """The parsed schema file `directory/name`; SchemaFileError when it is missing."""
    documents = _folder(Path(directory))
    if name not in documents:
        raise SchemaFileError(f"{Path(directory) / name}: schema file is missing")
    return documents[name]


@lru_cache(maxsize=None)
def _jsonschema() -> Any:
    """Debian's python3-jsonschema, or None: then nothing is checked, and this says so once."""
    try:
        import jsonschema
    except ImportError:
        print(f"warning: {sys.executable} has no jsonschema module: nothing is checked against the "
              f"JSON Schemas of {SCHEMA_DIR}", file=sys.stderr)
        return None
    return jsonschema


def available() -> bool:
    """Whether schemas can be checked here (the interpreter has jsonschema)."""
    return _jsonschema() is not None


@lru_cache(maxsize=None)
def validator(name: str, definition: str | None = None, directory: Path = SCHEMA_DIR) -> Any:
    """A validator for schema file `name` of `directory`, or for one of its `$defs`;
    None without jsonschema. SchemaFileError when the file is missing or not a valid schema."""
    directory = Path(directory)
    whole = document(name, directory)
    jsonschema = _jsonschema()
    if jsonschema is None:
        return None
    schema = whole
    if definition is not None:
        if definition not in whole.get("$defs", {}):
            raise SchemaFileError(f"{directory / name}: has no $defs/{definition}")
        schema = whole["$defs"][definition]
    cls = jsonschema.validators.validator_for(whole, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(whole)
    except jsonschema.SchemaError as e:
        raise SchemaFileError(f"{directory / name}: not a valid JSON Schema: {e.message}") from None
    store = {}
    for other, doc in _folder(directory).items():
        store[_base_uri(directory, other, doc)] = doc
        store[(directory / other).resolve().as_uri()] = doc
    with warnings.catch_warnings():
        # Newer jsonschema releases deprecate RefResolver for `referencing`;
        # Debian's 4.10 has only RefResolver. "#/$defs/..." inside a
        # definition resolves against its whole file (the referrer).
        warnings.simplefilter("ignore", DeprecationWarning)
        resolver = jsonschema.RefResolver(base_uri=_base_uri(directory, name, whole), referrer=whole, store=store)
        return cls(schema, resolver=resolver)


def errors(instance: Any, name: str, definition: str | None = None, directory: Path = SCHEMA_DIR) -> list[Any]:
    """jsonschema's ValidationErrors of `instance` against the schema, in jsonschema's order
    (each caller sorts them as its messages need); [] without jsonschema."""
    check = validator(name, definition, Path(directory))
    if check is None:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # RefResolver, as above
        return list(check.iter_errors(instance))


def field_path(path: Any, empty: str = "(top level)") -> str:
    """`steps[2].build.seed` from a jsonschema error path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or empty


def problems(instance: Any, name: str, definition: str | None = None, limit: int = 5) -> list[str]:
    """`field: message` for each way `instance` breaks a schema of spec/schema/ (the deepest
    error of each, at most `limit`)."""
    jsonschema = _jsonschema()
    out = []
    for error in sorted(errors(instance, name, definition), key=lambda e: [str(p) for p in e.absolute_path]):
        best = jsonschema.exceptions.best_match([error])
        message = best.message if len(best.message) <= 240 else best.message[:237] + "..."
        out.append(f"{field_path(best.absolute_path)}: {message}")
    return out[:limit]
