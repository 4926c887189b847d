import json
import tempfile
import unittest
from pathlib import Path

from reports import REPORT_SCHEMA, ReportError, validate_report, write_all
from reports.schema import validate_against_schema
from reports.tests import samples

OUTCOME_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "results"],
    "properties": {
        "results": {"type": "array", "items": {"$ref": "result.schema.json"}},
    },
}
RESULT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["case", "outcome"],
    "properties": {"outcome": {"enum": ["pass", "fail"]}},
}


class SchemaValidation(unittest.TestCase):
    def write_schemas(self, folder: Path) -> Path:
        (folder / "result.schema.json").write_text(json.dumps(RESULT_SCHEMA), encoding="utf-8")
        path = folder / "report.schema.json"
        path.write_text(json.dumps(OUTCOME_SCHEMA), encoding="utf-8")
        return path

    def test_errors_name_the_source_and_the_field(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            schema = self.write_schemas(Path(tmp))
            with self.assertRaises(ReportError) as ctx:
                validate_report(samples.mixed_report(), "out/report.json", schema)
        message = str(ctx.exception)
        self.assertIn("out/report.json", message)
        self.assertIn("report.schema.json", message)
        self.assertIn("at results[5].outcome: 'skip' is not one of", message)

    def test_a_valid_report_passes(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            schema = self.write_schemas(Path(tmp))
            self.assertTrue(validate_against_schema(samples.partial_report(), "x", schema))

    def test_no_schema_file_means_no_schema_check(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self.assertFalse(validate_against_schema({"anything": 1}, "x", Path(tmp) / "none.json"))

    def test_an_invalid_schema_is_reported(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            schema = Path(tmp) / "report.schema.json"
            schema.write_text(json.dumps({"type": "no-such-type"}), encoding="utf-8")
            with self.assertRaises(ReportError) as ctx:
                validate_against_schema({}, "x", schema)
        self.assertIn("not a valid JSON Schema", str(ctx.exception))

    def test_field_checks_run_after_the_schema(self) -> None:
        report = samples.mixed_report()
        report["results"][0]["world_size"] = 0
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(ReportError) as ctx:
                write_all(report, Path(tmp))
        self.assertIn("world_size", str(ctx.exception))
        self.assertIn(str(Path(tmp) / "report.json"), str(ctx.exception))


@unittest.skipUnless(REPORT_SCHEMA.is_file(), f"{REPORT_SCHEMA} does not exist yet")
class SuiteSchema(unittest.TestCase):
    """The samples follow the shared report contract, so the suite's own schema accepts them."""

    def test_samples_match_the_suite_schema(self) -> None:
        for name in ("mixed_report", "partial_report", "other_implementation_report"):
            with self.subTest(name):
                self.assertTrue(validate_against_schema(getattr(samples, name)(), name))


if __name__ == "__main__":
    unittest.main()
