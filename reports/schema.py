"""Validation of a report against spec/schema/report.schema.json, when the suite has one."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Optional

from .model import ReportError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPORT_SCHEMA = PROJECT_ROOT / "spec" / "schema" / "report.schema.json"
# A broken report usually breaks in many places; the first few say enough.
MAX_SCHEMA_ERRORS = 5


def _json_path(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def validate_against_schema(report: Any, source: str, schema_path: Optional[Path] = None) -> bool:
    """Validates `report`; returns False (nothing checked) when the schema file does not exist.

    Raises ReportError naming `source`, the schema and each failing field.
    """
    schema_path = Path(schema_path) if schema_path is not None else REPORT_SCHEMA
    if not schema_path.is_file():
        return False
    import jsonschema  # Debian's python3-jsonschema; only needed when a schema exists

    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{schema_path}: cannot read the report schema: {err}") from err
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as err:
        raise ReportError(f"{schema_path}: not a valid JSON Schema: {err.message}") from err
    with warnings.catch_warnings():
        # RefResolver resolves sibling schemas ($ref: "x.schema.json"); newer
        # jsonschema releases deprecate it in favour of `referencing`.
        warnings.simplefilter("ignore", DeprecationWarning)
        resolver = jsonschema.RefResolver(base_uri=schema_path.as_uri(), referrer=schema)
        validator = validator_class(schema, resolver=resolver)
        errors = sorted(validator.iter_errors(report),
                        key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        shown = [f"  at {_json_path(e.absolute_path)}: {e.message}"
                 for e in errors[:MAX_SCHEMA_ERRORS]]
        more = len(errors) - len(shown)
        if more:
            shown.append(f"  … and {more} more")
        raise ReportError(f"{source}: does not match {schema_path.name}:\n" + "\n".join(shown))
    return True
