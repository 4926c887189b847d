"""list, run with nothing selected, report, compare and outcome (CTest's view of one result)."""
import json
import os
import subprocess
import sys
import unittest

from runners.tests.support import FAKE, ROOT, TempSuite, case

OK = {"observations": {"x": {"kind": "json", "value": 1}}}


def runner(*args: str) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-m", "runners", *args], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    return p.returncode, p.stdout + p.stderr


class Verbs(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cases = [case("t.good", [{"equal": {"actual": "x", "value": 1}}], world_sizes=[1, 2]),
                 case("t.bad", [{"equal": {"actual": "x", "value": 2}}]),
                 case("t.needs", [{"equal": {"actual": "x", "value": 1}}], needs=["replicate"]),
                 case("t.listed", [{"equal": {"actual": "x", "value": 2}}])]
        cls.suite = TempSuite(cases, {"t.good": OK, "t.bad": OK, "t.needs": OK, "t.listed": OK})
        xfail = cls.suite.dir / "xfail.txt"
        xfail.write_text("t.listed  a known bug\n")
        cls.code, cls.output, cls.report = cls.suite.run("--world-sizes", "1,2", "--xfail", str(xfail))
        cls.report_path = cls.suite.out / "report.json"

    def test_list_formats(self) -> None:
        code, output = runner("list", "--format", "cmake", *self.suite.args())
        self.assertEqual(code, 0)
        self.assertEqual(sorted(output.split()), ["t.bad|t|1", "t.good|t|1,2", "t.listed|t|1", "t.needs|t|1"])
        code, output = runner("list", *self.suite.args())
        self.assertEqual(code, 0)
        self.assertRegex(output, r"t\.good\s+t\s+ws 1,2")

    def test_list_into_a_closed_pipe_ends_quietly(self) -> None:
        command = [sys.executable, "-m", "runners", "list", *self.suite.args()]
        p = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        p.stdout.close()  # the reader is gone before the first line (`| head -0`)
        stderr = p.stderr.read().decode()
        p.wait(timeout=60)
        p.stderr.close()
        self.assertNotIn("Traceback", stderr)

    def test_an_empty_selection_is_an_error(self) -> None:
        for selection in (["-k", "nothing.*"], ["--area", "t", "--world-sizes", "8"]):
            with self.subTest(selection=selection):
                code, output, _ = self.suite.run(*selection)
                self.assertEqual(code, 2)
                self.assertIn("error: nothing to run: no case matches the selection", output)

    def test_invalid_cases_are_errors_naming_the_field_and_the_rest_run(self) -> None:
        cases = [case("v.good", [{"equal": {"actual": "x", "value": 1}}]),
                 case("v.sizes_text", [{"equal": {"actual": "x", "value": 1}}], world_sizes="1,2"),
                 case("v.sizes_int", [{"equal": {"actual": "x", "value": 1}}], world_sizes=2),
                 case("v.unknown_step", [{"equal": {"actual": "x", "value": 1}}],
                      steps=[{"teleport": {"as": "x"}}, {"observe": {"as": "x", "value": "x"}}]),
                 case("v.twice", [{"equal": {"actual": "x", "value": 1}}], title=None)]
        suite = TempSuite(cases, {c["id"]: OK for c in cases})
        code, output, report = suite.run("--world-sizes", "1,2")
        self.assertEqual(code, 1, output)
        self.assertNotIn("Traceback", output)
        got = {f"{r['case']}@{r['world_size']}": (r["outcome"], r["message"]) for r in report["results"]}
        self.assertEqual(got["v.good@1"][0], "pass")
        for key, field in (("v.sizes_text@1", "field world_sizes"), ("v.sizes_text@2", "field world_sizes"),
                           ("v.sizes_int@2", "field world_sizes"), ("v.unknown_step@1", "field steps[0]"),
                           ("v.twice@1", "field title")):
            with self.subTest(key):
                outcome, message = got[key]
                self.assertEqual(outcome, "error")
                self.assertIn("invalid case:", message)
                self.assertIn(field, message)
                self.assertIn(f"case {key.split('@')[0]}", message)

    def test_unreadable_case_files_are_errors_and_the_rest_run(self) -> None:
        suite = TempSuite([case("v.good", [{"equal": {"actual": "x", "value": 1}}])], {"v.good": OK})
        folder = suite.dir / "conformance" / "v"
        (folder / "broken.yaml").write_text("id: [unclosed\n")
        (folder / "empty.yaml").write_text("")
        (folder / "listed.yaml").write_text("- a list, not a case\n")
        code, output, report = suite.run()
        self.assertEqual(code, 1, output)
        self.assertNotIn("Traceback", output)
        got = {r["case"]: (r["outcome"], r["message"]) for r in report["results"]}
        self.assertEqual(got["v.good"][0], "pass")
        for stand_in, why in (("v.broken", "not valid YAML"), ("v.empty", "holds one mapping"),
                              ("v.listed", "holds one mapping")):
            with self.subTest(stand_in):
                outcome, message = got[stand_in]
                self.assertEqual(outcome, "error")
                self.assertIn(why, message)
                self.assertIn(f"{stand_in.split('.')[1]}.yaml", message)
        code, output, report = suite.run("-k", "v.good")  # a selection elsewhere runs as if they were fine
        self.assertEqual((code, [r["case"] for r in report["results"]]), (0, ["v.good"]), output)

    def test_an_unwritable_out_is_found_before_any_case_runs(self) -> None:
        blocker = self.suite.dir / "a_file"
        blocker.write_text("")
        code, output = runner("run", "--out", str(blocker / "out"), "--adapter", " ".join(FAKE), *self.suite.args())
        self.assertEqual(code, 2, output)
        self.assertIn(f"error: --out {blocker / 'out'}: cannot write the report there", output)
        self.assertNotIn("PASS", output)

    def test_bad_timeouts_and_a_missing_xfail_file_are_usage_errors(self) -> None:
        for args, message in ((["--timeout", "0"], "expected a positive number of seconds, got '0'"),
                              (["--timeout", "-5"], "got '-5'"), (["--timeout", "nan"], "got 'nan'"),
                              (["--timeout", "soon"], "got 'soon'"),
                              (["--xfail", "/nonexistent/xfail.txt"], "no such file: '/nonexistent/xfail.txt'")):
            with self.subTest(args=args):
                code, output = runner("run", *args, *self.suite.args())
                self.assertEqual(code, 2)
                self.assertIn(message, output)
                self.assertNotIn("Traceback", output)

    def test_run_summary_and_exit_code(self) -> None:
        self.assertEqual(self.code, 1)
        lines = self.output.strip().splitlines()
        self.assertEqual(lines[-1], "2 passed, 1 failed, 1 unsupported, 0 skipped, 1 xfail")
        self.assertIn("index.html", self.output)
        self.assertIn("expected:", self.output)
        self.assertIn("observed:", self.output)
        self.assertIn("rerun: ./ccts run -k t.bad --world-sizes 1", self.output)

    def test_outcome_exit_codes(self) -> None:
        for case_id, ws, want in [("t.good", 2, 0), ("t.listed", 1, 0), ("t.needs", 1, 77), ("t.bad", 1, 1),
                                  ("t.good", 4, 1)]:
            with self.subTest(f"{case_id}@{ws}"):
                code, output = runner("outcome", "--report", str(self.report_path), "--case", case_id,
                                      "--world-size", str(ws))
                self.assertEqual(code, want, output)
        code, output = runner("outcome", "--report", str(self.suite.dir / "none.json"), "--case", "t.good",
                              "--world-size", "1")
        self.assertEqual(code, 1)

    def test_report_rerenders_and_compare_puts_reports_side_by_side(self) -> None:
        out = self.suite.dir / "rendered"
        code, output = runner("report", str(self.report_path), "--out", str(out))
        self.assertEqual(code, 0, output)
        self.assertEqual(sorted(p.name for p in out.iterdir()), ["index.html", "junit.xml", "report.md"])
        code, output = runner("compare", str(self.report_path), str(self.report_path), "--out", str(out))
        self.assertEqual(code, 0, output)
        self.assertTrue((out / "compare.html").exists())
        code, output = runner("report", str(self.suite.dir / "none.json"), "--out", str(out))
        self.assertEqual(code, 1)
        self.assertIn("none.json", output)


if __name__ == "__main__":
    unittest.main()


class Snapshot(unittest.TestCase):
    def test_snapshot_commits_the_report_and_a_summary_and_compare_defaults_to_it(self) -> None:
        suite = TempSuite([case("t.a", [{"equal": {"actual": "x", "value": 1}}])],
                          {"t.a": {"observations": {"x": {"kind": "json", "value": 1}}}})
        folder = suite.dir / "snapshot"
        env = dict(os.environ, PYTHONPATH=str(ROOT), FAKE_ANSWERS=str(suite.answers))

        def ccts(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "runners", *args], capture_output=True, text=True,
                                  env=env, cwd=ROOT, timeout=60)

        p = ccts("snapshot", "fake-gloo", "--snapshot-dir", str(folder), "--out", str(suite.out),
                 "--adapter", " ".join(FAKE), "--world-sizes", "1", *suite.args())
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        committed = json.loads((folder / "fake-gloo.json").read_text())
        self.assertEqual(committed["results"][0]["outcome"], "pass")
        self.assertIn("./ccts snapshot fake-gloo", committed["command"])
        summary = (folder / "SUMMARY.md").read_text()
        self.assertIn("fake 0", summary)
        self.assertIn("`fake-gloo.json`", summary)
        self.assertNotIn(str(folder), summary)
        p = ccts("snapshot", "bad/name", "--snapshot-dir", str(folder), *suite.args())
        self.assertEqual(p.returncode, 2)
        self.assertIn("snapshot name 'bad/name'", p.stderr)

    def test_the_committed_snapshot_is_valid_and_its_summary_current(self) -> None:
        import reports
        from runners import snapshot

        paths = snapshot.snapshot_reports()
        self.assertTrue(paths, "reports/snapshot/ holds no report")
        for path in paths:
            report = reports.load_report(path)  # schema, then fields
            self.assertFalse(report["partial"], path)
        self.assertEqual((snapshot.SNAPSHOT_DIR / snapshot.SUMMARY).read_text(encoding="utf-8"),
                         snapshot.summary_text(snapshot.SNAPSHOT_DIR),
                         "reports/snapshot/SUMMARY.md is stale: rerun ./ccts snapshot or write_summary")
