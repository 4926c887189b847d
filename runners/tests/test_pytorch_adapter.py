"""The PyTorch adapter (runners/adapters/pytorch) against the suite. With
Debian's PyTorch 1.13 the fixture cases must pass on real torch.nn and the
composable-API cases are unsupported (1.13 lacks them); with PyTorch 2.x every
case must pass."""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from runners.tests.support import ROOT

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

ADAPTER = f"{sys.executable} -m runners.adapters.pytorch"


def adapter_lines(*messages: dict) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT="29555")
    p = subprocess.run([sys.executable, "-m", "runners.adapters.pytorch"], input="".join(json.dumps(m) + "\n" for m in messages),
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


class Protocol(unittest.TestCase):
    def test_wrong_protocol_is_an_error_message(self) -> None:
        replies = adapter_lines({"type": "hello", "protocol": 99})
        self.assertEqual(replies[0]["type"], "error")
        self.assertIn("protocol version 99 is not supported", replies[0]["message"])

    def test_unknown_message_type(self) -> None:
        self.assertEqual(adapter_lines({"type": "nonsense"})[0]["type"], "error")


@unittest.skipIf(torch is None, "PyTorch is not installed")
class AgainstTheSuite(unittest.TestCase):
    def test_suite_on_real_pytorch(self) -> None:
        out = Path(tempfile.mkdtemp(prefix="ccts-pytorch-"))
        subprocess.run([sys.executable, "-m", "runners", "run", "--adapter", ADAPTER, "--world-sizes", "1",
                        "--out", str(out), "-q"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, text=True, timeout=600)
        report = json.loads((out / "report.json").read_text())
        by_area: dict[str, set] = {}
        for r in report["results"]:
            by_area.setdefault(r["area"], set()).add(r["outcome"])
        self.assertEqual(by_area.get("fixtures"), {"pass"}, "fixture cases on real torch.nn")
        capabilities = report["implementation"]["capabilities"]
        for area in ("contract", "mod_tracker"):
            allowed = {"pass"} if area in capabilities else {"unsupported"}
            self.assertLessEqual(by_area.get(area, set()), allowed, area)

    def test_golden_files_are_current(self) -> None:
        p = subprocess.run([sys.executable, "-m", "runners", "golden", "--check"], cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
