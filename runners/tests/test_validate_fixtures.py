"""validate checks fixture files (their schema, class references that resolve
within the file, fixture names unique across files) and golden files."""
import json
import textwrap
import unittest

from ccts_common import portable_values as pv
from runners.golden import render
from runners.tests.support import TempSuite, case
from runners.tests.test_validate import validate

GOOD = """\
classes:
  A:
    members:
      - {name: l, module: {class: Linear, in: 2, out: 2}}
    forward:
      params: [x]
      body: [{op: call, module: l, args: [x], as: y}]
      return: y
fixtures:
  - {name: A, root: A, source: new}
"""


class FixtureFiles(unittest.TestCase):
    def suite_with(self, **files: str) -> TempSuite:
        suite = TempSuite([])
        for name, text in files.items():
            (suite.dir / "fixtures" / f"{name}.yaml").write_text(textwrap.dedent(text))
        return suite

    def test_a_good_fixture_file_is_valid(self) -> None:
        code, output = validate(self.suite_with(good=GOOD))
        self.assertEqual(code, 0, output)

    def test_unknown_classes_name_file_owner_and_field(self) -> None:
        bad = GOOD.replace("{class: Linear, in: 2, out: 2}", "{class: Sequential, items: [Ghost]}")
        bad = bad.replace("root: A,", "root: Phantom,")
        code, output = validate(self.suite_with(bad=bad))
        self.assertEqual(code, 1)
        self.assertIn("bad.yaml: class 'A': field classes.A.members[0].module.items[0]: unknown class 'Ghost'", output)
        self.assertIn("bad.yaml: fixture 'A': field fixtures[0].root: unknown class 'Phantom'", output)

    def test_schema_errors_name_file_and_field(self) -> None:
        code, output = validate(self.suite_with(bad=GOOD.replace("in: 2, out: 2", "in: 2")))
        self.assertEqual(code, 1)
        self.assertIn("bad.yaml: field classes.A.members[0].module: 'out' is a required property", output)

    def test_container_subclasses_hold_only_modules_named_as_their_base_names_them(self) -> None:
        good = GOOD.replace("  A:\n", "  A:\n    base: ModuleList\n").replace("{name: l,", "{name: '0',")
        good = good.replace("module: l,", "module: '0',")
        self.assertEqual(validate(self.suite_with(good=good))[0], 0)
        bad = good.replace("{name: '0', module: {class: Linear, in: 2, out: 2}}",
                           "{name: x, module: Linear}\n      - {name: '1', parameter: {shape: [2]}}")
        code, output = validate(self.suite_with(bad=bad))
        self.assertEqual(code, 1)
        self.assertIn("bad.yaml: class 'A': field classes.A.members[0].name: a ModuleList subclass names its "
                      "members 0, 1, ... in order (expected '0')", output)
        self.assertIn("bad.yaml: class 'A': field classes.A.members[1]: a ModuleList subclass has only module "
                      "members", output)

    def test_fixture_names_are_unique_across_files(self) -> None:
        code, output = validate(self.suite_with(a=GOOD, b=GOOD))
        self.assertEqual(code, 1)
        self.assertIn("b.yaml: fixture 'A': name: also defined in", output)


class GoldenFiles(unittest.TestCase):
    def test_golden_files_exist_and_hold_an_observation(self) -> None:
        steps = [{"batch": {"as": "v", "shape": [1]}}, {"observe": {"as": "x", "value": "v"}}]
        cases = [case(f"t.{name}", [{"golden": {"actual": "x", "file": f"golden/{name}.json"}}], steps=steps)
                 for name in ("good", "missing", "broken", "wrong")]
        suite = TempSuite(cases)
        golden = suite.dir / "conformance" / "t" / "golden"
        golden.mkdir()
        producer = {"name": "test", "version": "0"}
        (golden / "good.json").write_text(render(producer, "t.good", pv.encode("float32", [1], [1.0])))
        (golden / "broken.json").write_text("{not json")
        (golden / "wrong.json").write_text(render(producer, "t.wrong", {"kind": "tensor", "dtype": "float32", "shape": [1]}))
        code, output = validate(suite)
        self.assertEqual(code, 1)
        self.assertNotIn("good.yaml", output)
        self.assertIn("missing.yaml: case t.missing: field expect[0].golden.file: golden file", output)
        self.assertIn("cannot be read", output)
        self.assertIn("broken.yaml: case t.broken: field expect[0].golden.file: golden file", output)
        self.assertIn("is not JSON", output)
        self.assertIn("wrong.yaml: case t.wrong: field expect[0].golden.file: golden file", output)
        self.assertIn("'data' is a required property", output)


if __name__ == "__main__":
    unittest.main()
