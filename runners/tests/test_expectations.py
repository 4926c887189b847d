"""Every expectation passes on a right observation and fails on a wrong one."""
import unittest

from ccts_common import portable_values as pv
from runners.expectations import Judge


def t(values, shape=None):
    return pv.encode("float32", shape or [len(values)], values)


def failures(expect, observations, errors=None, tolerance=None):
    case = {"expect": expect, **({"tolerance": tolerance} if tolerance else {})}
    return Judge(case, observations, errors or [None] * len(observations)).failures()


class Expectations(unittest.TestCase):
    def check(self, expect, right, wrong, **kw):
        self.assertEqual(failures(expect, right, **kw), [], "should pass")
        self.assertNotEqual(failures(expect, wrong, **kw), [], "should fail")

    def test_equal_literals(self):
        strings = {"kind": "strings", "items": ["a", "b"]}
        self.check([{"equal": {"actual": "s", "value": ["a", "b"]}}], [{"s": strings}],
                   [{"s": {"kind": "strings", "items": ["b", "a"]}}])
        self.check([{"equal": {"actual": "j", "value": {"w": [2, 2]}}}], [{"j": {"kind": "json", "value": {"w": [2, 2]}}}],
                   [{"j": {"kind": "json", "value": {"w": [2, 3]}}}])
        self.check([{"equal": {"actual": "x", "value": [[0.5, 1.5]]}}], [{"x": t([0.5, 1.5], [1, 2])}],
                   [{"x": t([0.5, 1.5], [2, 1])}])

    def test_equal_is_bit_exact(self):
        self.check([{"equal": {"actual": "a", "expected": "b"}}], [{"a": t([0.1]), "b": t([0.1])}],
                   [{"a": t([0.1]), "b": t([0.10000001])}])

    def test_not_equal(self):
        self.check([{"not_equal": {"actual": "a", "expected": "b"}}], [{"a": t([1.0]), "b": t([2.0])}],
                   [{"a": t([1.0]), "b": t([1.0])}])

    def test_allclose_uses_tolerance(self):
        named = lambda v: {"kind": "named_tensors", "items": [["w", t([v])]]}
        self.check([{"allclose": {"actual": "a", "expected": "b"}}], [{"a": named(1.0), "b": named(1.000001)}],
                   [{"a": named(1.0), "b": named(1.1)}])
        self.check([{"allclose": {"actual": "a", "expected": "b", "atol": 0.2}}], [{"a": t([1.0]), "b": t([1.1])}],
                   [{"a": t([1.0]), "b": t([1.3])}])
        self.assertNotEqual(failures([{"allclose": {"actual": "a", "expected": "b"}}],
                                     [{"a": named(1.0), "b": {"kind": "named_tensors", "items": [["v", t([1.0])]]}}]), [])

    def test_across_ranks(self):
        self.check([{"same_across_ranks": "a"}], [{"a": t([1.0])}, {"a": t([1.0])}],
                   [{"a": t([1.0])}, {"a": t([2.0])}])
        self.check([{"different_across_ranks": "a"}], [{"a": t([1.0])}, {"a": t([2.0])}],
                   [{"a": t([1.0])}, {"a": t([1.0])}])

    def test_set_equal(self):
        self.check([{"set_equal": {"actual": "s", "value": ["b", "a"]}}], [{"s": {"kind": "strings", "items": ["a", "b"]}}],
                   [{"s": {"kind": "strings", "items": ["a", "c"]}}])

    def test_error_needs_kind_and_matches_message(self):
        err = lambda kind, msg: {"e": {"kind": "error", "error": {"kind": kind, "phase": "apply", "message": msg, "step": "1"}}}
        expect = [{"error": {"actual": "e", "kind": "already_applied", "phase": "apply",
                             "message_prefix": "Each distinct"}}]
        self.check(expect, [err("already_applied", "Each distinct API")], [err("assertion", "Each distinct API")])
        self.assertNotEqual(failures(expect, [err("already_applied", "Other text")]), [])
        self.assertNotEqual(failures(expect, [{"e": {"kind": "error", "error": None}}]), [])
        regex = [{"error": {"actual": "e", "kind": "fqn_modified", "message_regex": r"^Checking (parameters|buffers): "}}]
        self.check(regex, [err("fqn_modified", "Checking buffers: x")], [err("fqn_modified", "Checking modules: x")])

    def test_case_level_error(self):
        error = {"kind": "invalid_argument", "phase": "apply", "message": "bad device", "step": "3"}
        expect = [{"error": {"kind": "invalid_argument", "message": "bad device"}}]
        self.assertEqual(failures(expect, [{}], errors=[error]), [])
        self.assertNotEqual(failures(expect, [{}], errors=[None]), [])

    def test_no_error(self):
        self.check([{"no_error": "e"}], [{"e": {"kind": "error", "error": None}}],
                   [{"e": {"kind": "error", "error": {"kind": "assertion", "phase": "apply", "message": "", "step": "0"}}}])

    def test_missing_observation_fails_on_that_rank(self):
        result = failures([{"equal": {"actual": "s", "value": []}}], [{"s": {"kind": "strings", "items": []}}, {}])
        self.assertEqual([f.rank for f in result], [1])


if __name__ == "__main__":
    unittest.main()
