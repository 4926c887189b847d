import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

from reports import write_all
from reports.tests import samples


class JUnitXml(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        write_all(samples.mixed_report(), Path(cls.tmp.name))
        cls.root = ET.parse(Path(cls.tmp.name) / "junit.xml").getroot()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def suite(self, name: str) -> ET.Element:
        found = [s for s in self.root.findall("testsuite") if s.get("name") == name]
        self.assertEqual(len(found), 1, name)
        return found[0]

    def case(self, name: str) -> ET.Element:
        found = [c for c in self.root.iter("testcase") if c.get("name") == name]
        self.assertEqual(len(found), 1, name)
        return found[0]

    def test_one_suite_per_area_with_counts(self) -> None:
        self.assertEqual([s.get("name") for s in self.root.findall("testsuite")],
                         ["contract", "fixtures", "replicate"])
        counts = {s.get("name"): (s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped"))
                  for s in self.root.findall("testsuite")}
        self.assertEqual(counts, {
            "contract": ("4", "0", "2", "0"),    # xfail, xpass pass; timeout and error are errors
            "fixtures": ("6", "1", "0", "1"),
            "replicate": ("3", "0", "1", "2"),   # crash is an error; unsupported is skipped
        })
        self.assertEqual((self.root.get("tests"), self.root.get("failures"), self.root.get("errors"),
                          self.root.get("skipped")), ("13", "1", "3", "3"))
        for suite in self.root.findall("testsuite"):
            self.assertEqual(int(suite.get("tests")), len(suite.findall("testcase")))

    def test_testcase_names_classnames_and_times(self) -> None:
        case = self.case("fixtures.toy_model.values@ws2")
        self.assertEqual(case.get("classname"), "fixtures")
        self.assertEqual(case.get("time"), "0.250")

    def test_failure_has_expected_observed_rank_and_rerun(self) -> None:
        failure = self.case("fixtures.toy_model.values@ws2").find("failure")
        self.assertIsNotNone(failure)
        text = failure.text
        self.assertIn("rank 1: equal (expect[0])", text)
        self.assertIn('expected: {"dtype": "float32", "shape": [2, 2], "values": [[1.0, 2.0], [3.5, 4.0]]}',
                      text)
        self.assertIn('observed: {"dtype": "float32", "shape": [2, 2], "values": [[1.0, 2.0], [3.25, 4.0]]}',
                      text)
        self.assertIn("rerun: ./ccts run -k 'fixtures.toy_model.values' --world-sizes 2", text)
        self.assertIn("rules: FIXTURES-FQN-002", text)

    def test_control_characters_are_escaped_and_markup_survives(self) -> None:
        failure = self.case("fixtures.toy_model.values@ws2").find("failure")
        self.assertIn("<script>alert('x')</script> & a bell \\x07 here", failure.get("message"))
        raw = (Path(self.tmp.name) / "junit.xml").read_text(encoding="utf-8")
        self.assertNotIn("\x07", raw)

    def test_crash_timeout_and_error_are_errors(self) -> None:
        for name, kind in (("replicate.buckets.crash@ws2", "crash"), ("contract.hooks.order@ws1", "timeout"),
                           ("contract.protocol.garbage@ws2", "error")):
            error = self.case(name).find("error")
            self.assertIsNotNone(error, name)
            self.assertEqual(error.get("type"), kind)
        crash = self.case("replicate.buckets.crash@ws2")
        self.assertIn("runtime_error in collective (step 4): peer closed connection", crash.find("error").text)
        self.assertIn("Segmentation fault", crash.find("system-err").text)

    def test_unsupported_and_skip_are_skipped_with_message(self) -> None:
        skipped = self.case("replicate.parity.net@ws2").find("skipped")
        self.assertEqual(skipped.get("message"), "unsupported: adapter lacks capability 'replicate'")
        self.assertEqual(self.case("fixtures.input.declared@ws1").find("skipped").get("message"),
                         "skip: excluded by --skip")

    def test_xfail_and_xpass_pass_with_a_note(self) -> None:
        for name, note in (("contract.fqn.modified@ws1", "expected failure: the reference does not check"),
                           ("contract.state.shared@ws1", "unexpected pass")):
            case = self.case(name)
            self.assertIsNone(case.find("failure"), name)
            self.assertIsNone(case.find("error"), name)
            self.assertIsNone(case.find("skipped"), name)
            self.assertIn(note, case.find("system-out").text)

    def test_passing_case_has_no_children(self) -> None:
        self.assertEqual(list(self.case("fixtures.toy_model.parameter_fqns@ws4")), [])

    def test_properties_carry_implementation_and_score(self) -> None:
        props = {p.get("name"): p.get("value") for p in self.suite("fixtures").iter("property")}
        self.assertEqual(props["implementation"], "ccts-reference 0.1.0")
        self.assertEqual(props["suite"], "ccts 0.1.0")
        self.assertEqual(props["score"], "1/9 cases, 1/8 rules")
        self.assertEqual(props["partial"], "false")

    def test_lone_surrogates_and_nul_do_not_break_the_file(self) -> None:
        report = samples.mixed_report()
        report["results"][4]["message"] = "nul \x00 and surrogate \ud800"
        with tempfile.TemporaryDirectory() as tmp:
            write_all(report, Path(tmp))
            root = ET.parse(Path(tmp) / "junit.xml").getroot()
        messages = [f.get("message") for f in root.iter("failure")]
        self.assertEqual(messages, ["nul \\x00 and surrogate \\ud800"])


if __name__ == "__main__":
    unittest.main()
