"""`ccts bench` (the suite's throughput) on one case at world size 1, both
adapters, and its reading of ctest's log. Needs the built ccts-adapter
(CCTS_BUILD_DIR or build/) and PyTorch in this interpreter."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import tempfile
import unittest
from pathlib import Path

from runners import cli
from runners.benchmarks.sessions import ctest_times
from runners.execute import default_adapter

HAS_TORCH = importlib.util.find_spec("torch") is not None

LOG = """Start testing: Dec 03 12:00 UTC
----------------------------------------------------------
1/3 Testing: oracle.area.contract
1/3 Test: oracle.area.contract
Command: "python" "-m" "runners"
Output:
----------------------------------------------------------
<end of output>
Test time =  30.50 sec
----------------------------------------------------------
Test Passed.
2/3 Testing: conformance.area.contract
2/3 Test: conformance.area.contract
<end of output>
Test time =   9.50 sec
3/3 Test: unit_nn
<end of output>
Test time =  10.00 sec
"""


class CtestLogTest(unittest.TestCase):
    def test_times_by_test(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "Testing" / "Temporary" / "LastTest.log"
            log.parent.mkdir(parents=True)
            log.write_text(LOG)
            self.assertEqual(ctest_times(Path(tmp)),
                             {"oracle.area.contract": 30.5, "conformance.area.contract": 9.5, "unit_nn": 10.0})
            self.assertIsNone(ctest_times(Path(tmp) / "elsewhere"))


@unittest.skipUnless(HAS_TORCH, "PyTorch is not installed")
@unittest.skipUnless(Path(default_adapter()).exists(), f"ccts-adapter is not built ({default_adapter()})")
class SmokeTest(unittest.TestCase):
    def test_both_adapters(self) -> None:
        printed = io.StringIO()
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(printed):
            code = cli.main(["bench", "-k", "contract.fqn.added_*", "--world-sizes", "1", "--baseline-cases", "1",
                             "--ddp-python", sys.executable, "--ctest-dir", tmp])
        text = printed.getvalue()
        self.assertEqual(code, 0, text)
        rows = [line for line in text.splitlines() if line.startswith(("reference adapter", "PyTorch adapter"))]
        self.assertEqual(len(rows), 2, text)
        for row in rows:
            self.assertIn(" pass", row, text)
            self.assertNotIn("fail", row, text)
        self.assertIn("no log of a ctest run", text)


if __name__ == "__main__":
    unittest.main()
