"""Literal values, golden files, rank restrictions and cases the runner
cannot judge: each passes on a right observation and fails on a wrong one."""
import json
import shutil
import tempfile
import unittest
from pathlib import Path

from ccts_common import portable_values as pv
from runners.expectations import Judge
from runners.golden import agrees_within_tolerance, render
from runners.tests.support import TempSuite, case, outcomes


def judge(expect, observations, golden_dir=None, tolerance=None):
    data = {"expect": expect, **({"tolerance": tolerance} if tolerance else {})}
    return Judge(data, observations, [None] * len(observations), golden_dir=golden_dir).failures()


def json_obs(value):
    return {"kind": "json", "value": value}


class Literals(unittest.TestCase):
    def test_json_literals_are_typed(self):
        expect = [{"equal": {"actual": "j", "value": {"flag": True, "n": 1}}}]
        self.assertEqual(judge(expect, [{"j": json_obs({"n": 1.0, "flag": True})}]), [])
        self.assertNotEqual(judge(expect, [{"j": json_obs({"flag": 1, "n": 1})}]), [])
        self.assertNotEqual(judge(expect, [{"j": json_obs({"flag": True, "n": "1"})}]), [])
        self.assertNotEqual(judge(expect, [{"j": json_obs({"flag": True})}]), [])

    def test_tensor_literals_round_to_the_dtype(self):
        for dtype in ("float32", "float16", "bfloat16", "float64"):
            with self.subTest(dtype):
                stored = pv.decode(pv.encode(dtype, [2], [0.1, -3.3]))[2] if dtype != "bfloat16" else None
                obs = pv.encode(dtype, [2], stored or [0.10009765625, -3.296875])
                self.assertEqual(judge([{"equal": {"actual": "t", "value": [0.1, -3.3]}}], [{"t": obs}]), [])
                self.assertNotEqual(judge([{"equal": {"actual": "t", "value": [0.1, -3.0]}}], [{"t": obs}]), [])
                self.assertNotEqual(judge([{"equal": {"actual": "t", "value": [[0.1, -3.3]]}}], [{"t": obs}]), [])

    def test_integer_bool_and_scalar_literals(self):
        ints = pv.encode("int64", [3], [1, -2, 3])
        self.assertEqual(judge([{"equal": {"actual": "t", "value": [1, -2, 3]}}], [{"t": ints}]), [])
        self.assertNotEqual(judge([{"equal": {"actual": "t", "value": [1, -2, 4]}}], [{"t": ints}]), [])
        self.assertNotEqual(judge([{"equal": {"actual": "t", "value": [1.5, -2, 3]}}], [{"t": ints}]), [])
        flags = pv.encode("bool", [2], [True, False])
        self.assertEqual(judge([{"equal": {"actual": "t", "value": [True, False]}}], [{"t": flags}]), [])
        self.assertNotEqual(judge([{"equal": {"actual": "t", "value": [1, 0]}}], [{"t": flags}]), [])
        scalar = pv.encode("float32", [], [2.5])
        self.assertEqual(judge([{"equal": {"actual": "t", "value": 2.5}}], [{"t": scalar}]), [])
        self.assertNotEqual(judge([{"equal": {"actual": "t", "value": [2.5]}}], [{"t": scalar}]), [])

    def test_named_tensor_literals_keep_order(self):
        named = {"kind": "named_tensors", "items": [["a", pv.encode("float32", [1], [1.0])],
                                                    ["b", pv.encode("float32", [1], [2.0])]]}
        self.assertEqual(judge([{"equal": {"actual": "n", "value": {"a": [1.0], "b": [2.0]}}}], [{"n": named}]), [])
        self.assertNotEqual(judge([{"equal": {"actual": "n", "value": {"b": [2.0], "a": [1.0]}}}], [{"n": named}]), [])
        self.assertNotEqual(judge([{"equal": {"actual": "n", "value": {"a": [1.0], "b": [2.5]}}}], [{"n": named}]), [])

    def test_allclose_needs_the_same_dtype(self):
        a, b = pv.encode("float32", [1], [1.0]), pv.encode("float64", [1], [1.0])
        failures = judge([{"allclose": {"actual": "a", "expected": "b"}}], [{"a": a, "b": b}])
        self.assertEqual(len(failures), 1)
        self.assertIn("dtypes differ", failures[0].message)

    def test_ranks_restricts_where_an_expectation_is_checked(self):
        observations = [{"s": {"kind": "strings", "items": ["a"]}}, {"s": {"kind": "strings", "items": ["b"]}}]
        self.assertEqual(judge([{"equal": {"actual": "s", "value": ["a"], "ranks": [0]}}], observations), [])
        failures = judge([{"equal": {"actual": "s", "value": ["a"], "ranks": [1]}}], observations)
        self.assertEqual([f.rank for f in failures], [1])
        self.assertEqual(failures[0].expected, ["a"])
        self.assertEqual(failures[0].observed, ["b"])


class Golden(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ccts-golden-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        (self.dir / "golden").mkdir()
        golden = {"kind": "named_tensors", "items": [["w", pv.encode("float32", [2], [1.0, 2.0])]]}
        (self.dir / "golden" / "w.json").write_text(render({"name": "test", "version": "0"}, "t.golden", golden))

    def observed(self, values):
        return [{"w": {"kind": "named_tensors", "items": [["w", pv.encode("float32", [2], values)]]}}]

    def test_golden_is_allclose_with_the_case_tolerance(self):
        expect = [{"golden": {"actual": "w", "file": "golden/w.json"}}]
        self.assertEqual(judge(expect, self.observed([1.0, 2.000001]), self.dir), [])
        self.assertNotEqual(judge(expect, self.observed([1.0, 2.1]), self.dir), [])
        self.assertEqual(judge(expect, self.observed([1.0, 2.1]), self.dir, tolerance={"atol": 0.2}), [])

    def test_check_accepts_another_oracle_or_cpu_within_tolerance_only(self):
        old = (self.dir / "golden" / "w.json").read_text()

        def now(values, version="1"):
            obs = {"kind": "named_tensors", "items": [["w", pv.encode("float32", [2], values)]]}
            return render({"name": "test", "version": version}, "t.golden", obs)

        self.assertTrue(agrees_within_tolerance(old, {}, now([1.0, 2.000001])))
        self.assertFalse(agrees_within_tolerance(old, {}, now([1.0, 2.1])))
        self.assertTrue(agrees_within_tolerance(old, {"tolerance": {"atol": 0.2}}, now([1.0, 2.1])))
        # The same oracle on another CPU: its last bits may move, not more.
        self.assertTrue(agrees_within_tolerance(old, {}, now([1.0, 2.000001], version="0")))
        self.assertFalse(agrees_within_tolerance(old, {}, now([1.0, 2.1], version="0")))

    def test_a_missing_golden_file_fails_naming_it(self):
        failures = judge([{"golden": {"actual": "w", "file": "golden/none.json"}}], self.observed([1.0, 2.0]),
                         self.dir)
        self.assertEqual(len(failures), 1)
        self.assertIn("none.json", failures[0].message)


class Unjudgeable(unittest.TestCase):
    def test_a_broken_pattern_is_an_error_and_the_run_goes_on(self):
        error = {"kind": "invalid_argument", "phase": "apply", "message": "bad", "step": "0"}
        cases = [case("t.a_regex", [{"error": {"kind": "invalid_argument", "message_regex": "(unclosed"}}]),
                 case("t.b_fine", [{"equal": {"actual": "x", "value": 1}}])]
        suite = TempSuite(cases, {"t.a_regex": {"observations": {}, "error": error},
                                  "t.b_fine": {"observations": {"x": {"kind": "json", "value": 1}}}})
        code, output, report = suite.run("--world-sizes", "1")
        self.assertEqual(outcomes(report), {"t.a_regex@1": "error", "t.b_fine@1": "pass"}, output)
        self.assertIn("cannot judge", report["results"][0]["message"])
        self.assertEqual(code, 1)


if __name__ == "__main__":
    unittest.main()
