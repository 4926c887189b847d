"""Expected-failures files: `releases:` specs, their parsing and matching, and a run
whose entries name other releases than the implementation's (spec/ADAPTERS.md)."""
import tempfile
import unittest
from pathlib import Path

from runners.execute import XfailEntry, apply_xfail, load_xfail
from runners.releases import parse_releases, release_of
from runners.results import CaseResult
from runners.suite import ROOT, SuiteError
from runners.tests.support import TempSuite, case, outcomes

OK = {"observations": {"x": {"kind": "json", "value": 1}}}


def matches(spec: str, version: str) -> bool:
    return parse_releases(spec).matches(version)


class ReleaseOf(unittest.TestCase):
    def test_numeric_release_parts_only(self) -> None:
        self.assertEqual(release_of("2.6.0+debian"), (2, 6, 0))
        self.assertEqual(release_of("2.13.0+cpu"), (2, 13, 0))
        self.assertEqual(release_of("1.13.0a0+git7c98e70"), (1, 13, 0))
        self.assertEqual(release_of("2.8.0.dev20250101"), (2, 8, 0))
        self.assertEqual(release_of("v2.5"), (2, 5))

    def test_no_release(self) -> None:
        for version in (None, "", "git", "+cpu"):
            self.assertIsNone(release_of(version), version)


class Matching(unittest.TestCase):
    def test_a_bare_release_is_its_series(self) -> None:
        for spec in ("2.6", "2.6.*", "==2.6.*"):
            self.assertTrue(matches(spec, "2.6.0+debian"), spec)
            self.assertTrue(matches(spec, "2.6.3"), spec)
            self.assertTrue(matches(spec, "2.6"), spec)
            self.assertFalse(matches(spec, "2.60.0"), spec)  # whole parts, not a string prefix
            self.assertFalse(matches(spec, "2.13.0+cpu"), spec)
            self.assertFalse(matches(spec, "2.5.1"), spec)
        self.assertTrue(matches("2", "2.13.0"))
        self.assertFalse(matches("2.6.1", "2.6.0"))

    def test_comparisons_pad_missing_parts_with_zero(self) -> None:
        self.assertTrue(matches(">=2.4", "2.4.0"))
        self.assertTrue(matches(">=2.4", "2.13.0+cpu"))
        self.assertFalse(matches(">=2.4", "1.13.0a0+git7c98e70"))  # the pre-release suffix does not count
        self.assertFalse(matches(">2.4", "2.4.0"))
        self.assertTrue(matches(">2.4", "2.4.1"))
        self.assertTrue(matches("<2.8", "2.7.9"))
        self.assertFalse(matches("<2.8", "2.8.0"))
        self.assertTrue(matches("<=2.8", "2.8.0"))
        self.assertTrue(matches("==2.6", "2.6.0+debian"))
        self.assertFalse(matches("==2.6", "2.6.1"))

    def test_every_clause_must_hold(self) -> None:
        self.assertTrue(matches(">=2.4,<2.8", "2.6.0+debian"))
        self.assertFalse(matches(">=2.4,<2.8", "2.8.0"))
        self.assertFalse(matches(">=2.4,<2.8", "2.3.1"))
        self.assertTrue(matches("2.6,>=2.6.2", "2.6.2"))
        self.assertFalse(matches("2.6,>=2.6.2", "2.6.1"))

    def test_an_unknown_version_matches_nothing(self) -> None:
        self.assertFalse(matches(">=0", "unknown"))
        self.assertFalse(parse_releases("<99").matches(None))

    def test_malformed_specs(self) -> None:
        for spec in ("", "2.6,", ",2.6", "=>2.6", ">=2.6.*", "<2.x", "2.6.*.1", "latest", ">= 2.6", "~=2.6", "!=2.6"):
            with self.assertRaises(ValueError, msg=spec):
                parse_releases(spec)


class Loading(unittest.TestCase):
    def write(self, text: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix="ccts-xfail-")) / "xfail.txt"
        path.write_text(text)
        return path

    def test_the_releases_token_comes_right_after_the_pattern(self) -> None:
        entries = load_xfail(self.write("# header\n\na.b  releases:>=2.4,<2.8  upstream bug 1  # why\n"
                                        "c.*@2 plain reason with releases:2.6 in it\n"))
        self.assertEqual([(e.pattern, e.reason, e.line) for e in entries],
                         [("a.b", "upstream bug 1", 3), ("c.*@2", "plain reason with releases:2.6 in it", 4)])
        self.assertEqual(entries[0].releases.text, ">=2.4,<2.8")
        self.assertIsNone(entries[1].releases)
        self.assertTrue(entries[0].applies_to("2.6.0+debian"))
        self.assertFalse(entries[0].applies_to("2.13.0+cpu"))
        self.assertTrue(entries[1].applies_to(None))

    def test_a_malformed_spec_names_file_and_line(self) -> None:
        path = self.write("a.ok  releases:2.6  fine\na.bad  releases:>=2.x  broken\n")
        with self.assertRaises(SuiteError) as raised:
            load_xfail(path)
        self.assertIn(f"{path}:2: malformed 'releases:>=2.x'", str(raised.exception))

    def test_a_releases_token_still_needs_a_reason(self) -> None:
        for text in ("a.b releases:2.6\n", "a.b releases:2.6   # only a comment\n", "a.b\n"):
            with self.assertRaises(SuiteError, msg=text) as raised:
                load_xfail(self.write(text))
            self.assertIn(":1: an expected failure needs a reason", str(raised.exception))
        with self.assertRaises(SuiteError) as raised:
            load_xfail(self.write("a.b releases: reason\n"))
        self.assertIn("malformed 'releases:'", str(raised.exception))

    def test_the_pytorch_adapters_file_loads_and_each_entry_names_its_releases(self) -> None:
        # An entry for the pinned 2.13 is an upstream bug seen there; the oracle's
        # CTest runs are --strict, so such an entry that stops failing fails them.
        entries = load_xfail(ROOT / "runners" / "adapters" / "pytorch" / "expected-failures.txt")
        self.assertTrue(entries)
        for entry in entries:
            self.assertIsNotNone(entry.releases, f"line {entry.line} names no releases")
            self.assertFalse(entry.applies_to("2.99.0"), f"line {entry.line} applies to every later release")


class Applying(unittest.TestCase):
    def result(self, outcome: str) -> CaseResult:
        return CaseResult(case="m.ac", area="m", title="", file="", source="", requirements=[], world_size=2,
                          backend="gloo", device="cpu", rerun="", outcome=outcome)

    def test_only_entries_for_the_implementations_release_apply(self) -> None:
        entries = [XfailEntry("m.*", "bug in 2.6", 1, parse_releases("2.6")),
                   XfailEntry("m.ac@2", "bug everywhere", 2)]
        on_26 = self.result("fail")
        apply_xfail(on_26, entries, strict=False, version="2.6.0+debian")
        self.assertEqual((on_26.outcome, on_26.xfail_reason), ("xfail", "bug in 2.6"))
        on_213 = self.result("fail")
        apply_xfail(on_213, entries, strict=False, version="2.13.0+cpu")
        self.assertEqual((on_213.outcome, on_213.xfail_reason), ("xfail", "bug everywhere"))

    def test_an_entry_for_other_releases_leaves_the_outcome_alone(self) -> None:
        entry = XfailEntry("m.ac", "bug in 2.6", 1, parse_releases("2.6"))
        for version in ("2.13.0+cpu", None):
            passed = self.result("pass")
            apply_xfail(passed, [entry], strict=True, version=version)
            self.assertEqual((passed.outcome, passed.xfail_reason), ("pass", None))
        self.assertFalse(entry.used)


class InARun(unittest.TestCase):
    def test_entries_for_other_releases_neither_apply_nor_warn(self) -> None:
        cases = [case("t.bad", [{"equal": {"actual": "x", "value": 2}}]),
                 case("t.good", [{"equal": {"actual": "x", "value": 1}}])]
        suite = TempSuite(cases, {"t.bad": OK, "t.good": OK})
        xfail = suite.dir / "xfail.txt"
        xfail.write_text("t.bad  releases:2.6  bug of 2.6\n"
                         "t.good  releases:<2.6  fixed in 2.6\n"
                         "t.gone  releases:2.6  stale entry\n"
                         "t.old  releases:1.13  gone with 1.13\n")
        code, output, report = suite.run("--world-sizes", "1", "--xfail", str(xfail),
                                         env={"FAKE_VERSION": "2.6.0+debian"})
        self.assertEqual(outcomes(report), {"t.bad@1": "xfail", "t.good@1": "pass"}, output)
        self.assertEqual(code, 0)
        self.assertIn("'t.gone' matches no case", output)
        self.assertNotIn("t.old", output)
        self.assertNotIn("t.good'", output)
        code, output, report = suite.run("--world-sizes", "1", "--xfail", str(xfail),
                                         env={"FAKE_VERSION": "2.13.0+cpu"})
        self.assertEqual(outcomes(report), {"t.bad@1": "fail", "t.good@1": "pass"}, output)
        self.assertEqual(code, 1)
        self.assertNotIn("matches no case", output)

    def test_a_malformed_spec_stops_the_run(self) -> None:
        suite = TempSuite([case("t.good", [{"equal": {"actual": "x", "value": 1}}])], {"t.good": OK})
        xfail = suite.dir / "xfail.txt"
        xfail.write_text("# header\nt.good  releases:2.6;2.7  typo\n")
        code, output, _ = suite.run("--world-sizes", "1", "--xfail", str(xfail))
        self.assertEqual(code, 2, output)
        self.assertIn(f"{xfail}:2: malformed 'releases:2.6;2.7'", output)


if __name__ == "__main__":
    unittest.main()
