"""Validation of a report against spec/schema/report.schema.json, when the suite has one,
through the suite's one JSON Schema loader (ccts_common/schemas.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ccts_common import schemas

from .model import ReportError

PROJECT_ROOT = schemas.ROOT
REPORT_SCHEMA = schemas.SCHEMA_DIR / "report.schema.json"
# A broken report usually breaks in many places; the first few say enough.
MAX_SCHEMA_ERRORS = 5


def validate_against_schema(report: Any, source: str, schema_path: Optional[Path] = None) -> bool:
    """Validates `report`; returns False (nothing checked) when the schema file does not exist
    or the interpreter has no jsonschema module.

    Raises ReportError naming `source`, the schema and each failing field.
    """
    schema_path = Path(schema_path) if schema_path is not None else REPORT_SCHEMA
    if not schema_path.is_file() or not schemas.available():
        return False
    try:
        # Sibling schemas (`$ref: "x.schema.json"`) resolve within the schema's folder.
        errors = sorted(schemas.errors(report, schema_path.name, directory=schema_path.parent),
                        key=lambda e: [str(p) for p in e.absolute_path])
    except schemas.SchemaFileError as err:
        raise ReportError(str(err)) from err
    if errors:
        shown = [f"  at {schemas.field_path(e.absolute_path)}: {e.message}"
                 for e in errors[:MAX_SCHEMA_ERRORS]]
        more = len(errors) - len(shown)
        if more:
            shown.append(f"  … and {more} more")
        raise ReportError(f"{source}: does not match {schema_path.name}:\n" + "\n".join(shown))
    return True
