"""validate names the file, the case and the field of every problem."""
import subprocess
import sys
import unittest

from runners.tests.support import ROOT, TempSuite, case


def validate(suite: TempSuite) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-m", "runners", "validate", *suite.args()], capture_output=True,
                       text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    return p.returncode, p.stdout + p.stderr


class Validate(unittest.TestCase):
    def test_good_case_is_valid(self):
        code, output = validate(TempSuite([case("t.ok", [{"equal": {"actual": "x", "value": 1}}],
                                                steps=[{"batch": {"as": "v", "shape": [2]}},
                                                       {"observe": {"as": "x", "value": "v"}}])]))
        self.assertEqual(code, 0, output)

    def test_errors_name_file_case_and_field(self):
        bad_rule = case("t.rule", [{"equal": {"actual": "x", "value": 1}}], requirements=["TEST-NOPE-001"])
        bad_fixture = case("t.fixture", [{"equal": {"actual": "x", "value": 1}}],
                           steps=[{"build": {"fixture": "Nope", "as": "m"}}, {"observe": {"as": "x", "parameter_fqns": "m"}}])
        bad_step = case("t.step", [{"equal": {"actual": "x", "value": 1}}], steps=[{"explode": {"as": "x"}}])
        bad_ref = case("t.ref", [{"equal": {"actual": "y", "value": 1}}], steps=[{"observe": {"as": "x", "value": "v"}}])
        wrong_area = case("t.area", [{"equal": {"actual": "x", "value": 1}}])
        suite = TempSuite([bad_rule, bad_fixture, bad_step, bad_ref, wrong_area,
                           case("t.rule2", [{"equal": {"actual": "x", "value": 1}}])])
        (suite.dir / "conformance" / "t" / "rule2.yaml").write_text(
            (suite.dir / "conformance" / "t" / "rule.yaml").read_text())
        (suite.dir / "conformance" / "other").mkdir()
        (suite.dir / "conformance" / "t" / "area.yaml").rename(suite.dir / "conformance" / "other" / "area.yaml")
        code, output = validate(suite)
        self.assertEqual(code, 1)
        for expected in [
            "rule.yaml: case t.rule: field requirements[0]: unknown rule TEST-NOPE-001",
            "fixture.yaml: case t.fixture: field steps[0].build.fixture: unknown fixture 'Nope'",
            "step.yaml: case t.step: field steps[0]: ",
            "ref.yaml: case t.ref: field steps[0].observe.value: 'v' is not defined before this step",
            "ref.yaml: case t.ref: field expect[0].equal: no step observes 'y'",
            "area.yaml: case t.area: field id: must start with its folder's area 'other.'",
            "rule2.yaml: case t.rule: field id: duplicate id",
        ]:
            self.assertIn(expected, output)


if __name__ == "__main__":
    unittest.main()
