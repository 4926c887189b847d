"""The suite's JSON Schemas (spec/schema/*.schema.json), loaded once, with
references between the files (`fixture.schema.json#/$defs/...`) resolved
locally by each schema's `$id`."""
from __future__ import annotations

import json
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from .suite import ROOT, SuiteError

SCHEMA_DIR = ROOT / "spec" / "schema"


class SchemaFileError(SuiteError):
    """A schema file of the suite that is missing or broken."""


@lru_cache(maxsize=None)
def _store(directory: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    """Every schema of the folder by file name and by `$id`."""
    store: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.schema.json")):
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise SchemaFileError(f"{path}: not a readable JSON Schema: {e}") from None
        store[path.name] = schema
        if isinstance(schema.get("$id"), str):
            store[schema["$id"]] = schema
    return store


@lru_cache(maxsize=None)
def _jsonschema() -> Any:
    """Debian's python3-jsonschema, or None (then nothing is checked, and the runner says so once)."""
    try:
        import jsonschema
    except ImportError:
        print(f"warning: {sys.executable} has no jsonschema module: messages are not checked against "
              f"{SCHEMA_DIR}", file=sys.stderr)
        return None
    return jsonschema


@lru_cache(maxsize=None)
def validator(name: str, definition: str | None = None) -> Any:
    """A validator for schema file `name`, or for one of its `$defs`."""
    jsonschema = _jsonschema()
    store = _store()
    if name not in store:
        raise SchemaFileError(f"{SCHEMA_DIR / name}: schema file is missing")
    document = store[name]
    schema = document
    if definition is not None:
        if definition not in document.get("$defs", {}):
            raise SchemaFileError(f"{SCHEMA_DIR / name}: has no $defs/{definition}")
        schema = document["$defs"][definition]
    with warnings.catch_warnings():
        # newer jsonschema releases deprecate RefResolver for `referencing`;
        # Debian's 4.10 has only RefResolver.
        warnings.simplefilter("ignore", DeprecationWarning)
        # "#/$defs/..." inside a definition resolves against its whole file.
        resolver = jsonschema.RefResolver(base_uri=document.get("$id", ""), referrer=document,
                                          store={k: v for k, v in store.items() if "://" in k})
        return jsonschema.Draft202012Validator(schema, resolver=resolver)


def field_path(path: Any) -> str:
    """`steps[2].build.seed` from a jsonschema error path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def problems(instance: Any, name: str, definition: str | None = None, limit: int = 5) -> list[str]:
    """`field: message` for each way `instance` breaks the schema (deepest errors first, at most `limit`)."""
    jsonschema = _jsonschema()
    if jsonschema is None:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        errors = list(validator(name, definition).iter_errors(instance))
    out = []
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        best = jsonschema.exceptions.best_match([error])
        message = best.message if len(best.message) <= 240 else best.message[:237] + "..."
        out.append(f"{field_path(best.absolute_path)}: {message}")
    return out[:limit]
