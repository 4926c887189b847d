"""Crashes, hangs and protocol garbage fail one case; the run goes on."""
import os
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

from runners.tests.support import FAKE, ROOT, TempSuite, case, outcomes

OK = {"observations": {"x": {"kind": "json", "value": 1}}}


class Faults(unittest.TestCase):
    def test_crash_hang_garbage_then_the_run_goes_on(self) -> None:
        cases = [case(f"t.{name}", [{"equal": {"actual": "x", "value": 1}}], world_sizes=[2])
                 for name in ("a_crash", "b_hang", "c_garbage", "d_fine")]
        suite = TempSuite(cases, {"t.d_fine": OK})
        code, output, report = suite.run("--timeout", "3", "--world-sizes", "2")
        self.assertEqual(outcomes(report), {"t.a_crash@2": "crash", "t.b_hang@2": "timeout",
                                            "t.c_garbage@2": "error", "t.d_fine@2": "pass"}, output)
        self.assertEqual(code, 1)
        crash = report["results"][0]
        self.assertIn("died (exit code 3)", crash["message"])
        self.assertIn("running t.a_crash", crash["ranks"][0]["stderr_tail"])
        self.assertIn("rerun: ./ccts run -k t.a_crash --world-sizes 2", output)

    def test_wrong_duplicate_and_late_replies_fail_their_own_case_and_the_next_runs(self) -> None:
        names = ("a_wrong_case", "b_fine", "c_wrong_rank", "d_fine", "e_twice", "f_fine", "g_late_dup", "h_fine")
        cases = [case(f"t.{name}", [{"equal": {"actual": "x", "value": 1}}], world_sizes=[2]) for name in names]
        suite = TempSuite(cases, {f"t.{name}": OK for name in names})
        code, output, report = suite.run("--world-sizes", "2", env={"FAKE_BAD_RANK": "1"})
        got = outcomes(report)
        self.assertEqual(got, {f"t.{n}@2": "pass" if n.endswith("fine") else "error" for n in names}, output)
        self.assertEqual(code, 1)
        messages = {r["case"]: r["message"] for r in report["results"]}
        self.assertIn("rank 1 answered case 't.some_other_case' as rank 1; it was sent case 't.a_wrong_case'",
                      messages["t.a_wrong_case"])
        self.assertIn("as rank 2; it was sent case 't.c_wrong_rank' as rank 1", messages["t.c_wrong_rank"])
        self.assertIn("rank 1", messages["t.e_twice"])
        self.assertIn("rank 1 sent a second reply to case 't.g_late_dup' while case 't.h_fine' ran",
                      messages["t.g_late_dup"])

    def test_a_rank_that_stops_reading_is_a_timeout_not_a_stuck_runner(self) -> None:
        # Cases bigger than a pipe's buffer, to a rank that reads nothing after hello:
        # a blocking write would never return.
        cases = [case(f"t.{name}", [{"equal": {"actual": "x", "value": 1}}], title="x" * 300_000)
                 for name in ("a_first", "b_second")]
        suite = TempSuite(cases, {"t.a_first": OK, "t.b_second": OK})
        started = time.monotonic()
        code, output, report = suite.run("--world-sizes", "1", "--timeout", "2", env={"FAKE_DEAF": "1"}, timeout=60)
        self.assertLess(time.monotonic() - started, 30, output)
        self.assertEqual(outcomes(report), {"t.a_first@1": "timeout", "t.b_second@1": "timeout"}, output)
        self.assertIn("rank 0 did not read its input within 2 s", report["results"][0]["message"])

    def test_an_adapter_that_never_says_hello_trips_the_breaker(self) -> None:
        names = [f"t.case{i}" for i in range(6)]
        suite = TempSuite([case(n, [{"equal": {"actual": "x", "value": 1}}]) for n in names], {n: OK for n in names})
        started = time.monotonic()
        code, output, report = suite.run("--world-sizes", "1", "--timeout", "2", env={"FAKE_MUTE": "1"})
        # Two tries of 2 s each, then the other four at once (not 6 x 2 s).
        self.assertLess(time.monotonic() - started, 10, output)
        self.assertEqual(code, 1)
        messages = [r["message"] for r in report["results"]]
        self.assertEqual([r["outcome"] for r in report["results"]], ["error"] * 6)
        for message in messages[:2]:
            self.assertIn("did not start: no reply from rank(s) [0] within 2 s", message)
        for message in messages[2:]:
            self.assertIn("failed to start 2 times in a row at world size 1 (circuit breaker); last: no reply", message)

    def test_unsupported_when_a_capability_is_missing(self) -> None:
        suite = TempSuite([case("t.needs", [{"equal": {"actual": "x", "value": 1}}], needs=["replicate"])], {"t.needs": OK})
        code, output, report = suite.run("--world-sizes", "1")
        self.assertEqual(outcomes(report), {"t.needs@1": "unsupported"})
        self.assertEqual(code, 0)
        self.assertIn("0 passed, 0 failed, 1 unsupported, 0 skipped", output)

    def test_a_backend_or_device_the_adapter_lacks_is_unsupported(self) -> None:
        # The fake lists gloo/cpu; nccl means cuda unless --device says otherwise.
        suite = TempSuite([case("t.a", [{"equal": {"actual": "x", "value": 1}}]),
                           case("t.cpu_only", [{"equal": {"actual": "x", "value": 1}}], backends=["gloo"])],
                          {"t.a": OK, "t.cpu_only": OK})
        code, output, report = suite.run("--world-sizes", "1", "--backend", "nccl")
        self.assertEqual(outcomes(report), {"t.a@1": "unsupported", "t.cpu_only@1": "unsupported"}, output)
        self.assertEqual(code, 0)
        by_case = {r["case"]: r for r in report["results"]}
        self.assertEqual(by_case["t.a"]["message"], "the adapter's backends are ['gloo'], not nccl")
        self.assertEqual(by_case["t.cpu_only"]["message"], "the case runs on ['gloo'], not nccl")
        self.assertEqual(by_case["t.a"]["device"], "cuda")
        self.assertIn("--backend nccl", by_case["t.a"]["rerun"])
        _, output, report = suite.run("--world-sizes", "1", "--device", "cuda")
        self.assertEqual(report["results"][0]["message"], "the adapter's devices are ['cpu'], not cuda", output)

    def test_adapter_error_kind_unsupported_is_unsupported(self) -> None:
        answers = {"t.u": {"error": {"kind": "unsupported", "phase": "build", "message": "no", "step": "0"}}}
        suite = TempSuite([case("t.u", [{"equal": {"actual": "x", "value": 1}}])], answers)
        _, _, report = suite.run("--world-sizes", "1")
        self.assertEqual(outcomes(report), {"t.u@1": "unsupported"})

    def test_a_port_taken_before_rank_0_binds_it_is_retried_with_another(self) -> None:
        suite = TempSuite([case("t.a", [{"equal": {"actual": "x", "value": 1}}], world_sizes=[2])], {"t.a": OK})
        marker = suite.dir / "port-taken"
        code, output, report = suite.run("--world-sizes", "2", env={"FAKE_PORT_TAKEN": str(marker)})
        self.assertTrue(marker.exists(), "the first start did fail")
        self.assertEqual(outcomes(report), {"t.a@2": "pass"}, output)
        self.assertEqual(code, 0)

    def test_unexpected_error_fails_with_its_message(self) -> None:
        answers = {"t.e": {"error": {"kind": "runtime_error", "message": "boom", "step": "2"}}}
        steps = [{"batch": {"as": "a", "shape": [2]}}, {"batch": {"as": "b", "shape": [2]}},
                 {"mse_loss": {"input": "a", "target": "b", "as": "l"}}, {"observe": {"as": "x", "value": "l"}}]
        suite = TempSuite([case("t.e", [{"equal": {"actual": "x", "value": 1}}], steps=steps)], answers)
        code, output, report = suite.run("--world-sizes", "1")
        self.assertEqual(outcomes(report), {"t.e@1": "fail"})
        self.assertIn("rank 0 raised runtime_error in forward (step 2): boom", output)

    def test_xfail_xpass_strict_and_stale_entries(self) -> None:
        cases = [case("t.bad", [{"equal": {"actual": "x", "value": 2}}]),
                 case("t.good", [{"equal": {"actual": "x", "value": 1}}])]
        suite = TempSuite(cases, {"t.bad": OK, "t.good": OK})
        xfail = suite.dir / "xfail.txt"
        xfail.write_text("# expected failures\nt.bad  known bug 12\nt.good  fixed already\nt.gone  stale entry\n")
        code, output, report = suite.run("--world-sizes", "1", "--xfail", str(xfail))
        self.assertEqual(outcomes(report), {"t.bad@1": "xfail", "t.good@1": "xpass"})
        self.assertEqual(code, 0)
        self.assertIn("'t.gone' matches no case", output)
        self.assertEqual(report["results"][0]["xfail_reason"], "known bug 12")
        code, _, report = suite.run("--world-sizes", "1", "--xfail", str(xfail), "--strict")
        self.assertEqual(outcomes(report)["t.good@1"], "fail")
        self.assertEqual(code, 1)
        xfail.write_text("t.bad\n")
        code, output, _ = suite.run("--world-sizes", "1", "--xfail", str(xfail))
        self.assertEqual(code, 2)
        self.assertIn("needs a reason", output)

    def test_interrupt_writes_a_partial_report_and_reaps_every_rank(self) -> None:
        self.interrupt(signal.SIGINT)

    def test_terminate_writes_a_partial_report_and_reaps_every_rank(self) -> None:
        self.interrupt(signal.SIGTERM)

    def test_interrupts_in_a_burst_still_write_the_report_and_reap_every_rank(self) -> None:
        self.interrupt(signal.SIGINT, times=6)

    def test_interrupt_while_the_ranks_start_reaps_them(self) -> None:
        self.interrupt(signal.SIGINT, until='"type": "hello"', env={"FAKE_MUTE": "1"})

    def test_a_process_a_rank_started_in_its_own_session_dies_with_the_rank(self) -> None:
        # The rank starts a child in a new session (out of its process group), then exits.
        suite = TempSuite([case("t.spawn_then_crash", [{"equal": {"actual": "x", "value": 1}}]),
                           case("t.z_fine", [{"equal": {"actual": "x", "value": 1}}])], {"t.z_fine": OK})
        pid_file = suite.dir / "pids"
        code, output, report = suite.run("--world-sizes", "1", env={"FAKE_PIDS": str(pid_file)})
        self.assertEqual(outcomes(report), {"t.spawn_then_crash@1": "crash", "t.z_fine@1": "pass"}, output)
        pids = pid_file.read_text().split()
        self.assertEqual(len(pids), 3, "two ranks and the child")
        self.assert_gone(pids)

    def interrupt(self, signum: int, times: int = 1, until: str = '"type": "run"',
                  env: dict[str, str] | None = None) -> None:
        cases = [case("t.a_hang", [{"equal": {"actual": "x", "value": 1}}], world_sizes=[2])]
        suite = TempSuite(cases)
        pid_file, received = suite.dir / "pids", suite.dir / "received"
        env = dict(os.environ, PYTHONPATH=str(ROOT), FAKE_ANSWERS=str(suite.answers), FAKE_PIDS=str(pid_file),
                   FAKE_RECEIVED=str(received), **(env or {}))
        process = subprocess.Popen([sys.executable, "-m", "runners", "run", "--out", str(suite.out), "--adapter",
                                    " ".join(FAKE), "--world-sizes", "2", *suite.args()], env=env, cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        def both_ranks_there() -> bool:
            logs = [Path(f"{received}.{rank}") for rank in (0, 1)]
            return all(log.exists() and until in log.read_text() for log in logs)

        deadline = time.monotonic() + 30
        while not both_ranks_there() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        children = pid_file.read_text().split() if pid_file.exists() else []
        self.assertEqual(len(children), 2, "both ranks should be up")
        for _ in range(times):
            process.send_signal(signum)
            time.sleep(0.02)
        output, _ = process.communicate(timeout=30)
        self.assertEqual(process.returncode, 130, output)
        self.assertNotIn("Traceback", output)
        report = (suite.out / "report.json").read_text()
        self.assertIn('"partial": true', report)
        self.assertTrue((suite.out / "index.html").exists(), "every format is written")
        self.assert_gone(children)

    def assert_gone(self, pids: list[str]) -> None:
        deadline = time.monotonic() + 5  # a killed process may wait a moment for its new parent to reap it
        for pid in pids:
            while alive(int(pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertFalse(alive(int(pid)), f"process {pid} outlived the run")


def alive(pid: int) -> bool:
    """Running or stopped; a zombie (killed, not yet reaped) is not alive."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

if __name__ == "__main__":
    unittest.main()
