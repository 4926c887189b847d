"""Ranks on separate hosts: network namespaces joined by a bridge stand in for
machines, ranks reach them through the wrapper route of spec/ADAPTERS.md, Gloo
runs on their addresses; a link cut mid-case is that case's timeout, and the
run goes on in a fresh session."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

from runners.tests.support import ROOT

HERE = Path(__file__).parent
ADAPTER = os.environ.get("CCTS_ADAPTER", str(ROOT / "build" / "reference" / "adapter" / "ccts-adapter"))
PYTORCH = os.environ.get("CCTS_ORACLE_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
HOSTS = 2


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


class Hosts:
    """HOSTS namespaces {prefix}0.., each with eth0 at 10.231.0.(n+1)/24, whose veth
    peers {prefix}h0.. hang on bridge {prefix}br in the runner's namespace."""

    def __init__(self) -> None:
        self.prefix = f"cc{os.getpid() % 100000}"  # unique per test process, short enough for a link name

    def unavailable(self) -> str | None:
        if shutil.which("ip") is None:
            return "no ip command (iproute2)"
        probe = ip("netns", "add", f"{self.prefix}probe")
        if probe.returncode != 0:
            return f"cannot make network namespaces here: {probe.stderr.strip()}"
        ip("netns", "del", f"{self.prefix}probe")
        return None

    def create(self) -> None:
        steps = [["link", "add", f"{self.prefix}br", "type", "bridge"], ["link", "set", f"{self.prefix}br", "up"]]
        for n in range(HOSTS):
            ns, host = f"{self.prefix}{n}", f"{self.prefix}h{n}"
            steps += [["netns", "add", ns], ["link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns],
                      ["link", "set", host, "master", f"{self.prefix}br", "up"],
                      ["-n", ns, "addr", "add", f"10.231.0.{n + 1}/24", "dev", "eth0"],
                      ["-n", ns, "link", "set", "eth0", "up"], ["-n", ns, "link", "set", "lo", "up"]]
        for step in steps:
            done = ip(*step)
            if done.returncode != 0:
                self.destroy()
                raise unittest.SkipTest(f"ip {' '.join(step)}: {done.stderr.strip()}")

    def processes(self) -> list[str]:
        return [pid for n in range(HOSTS) for pid in ip("netns", "pids", f"{self.prefix}{n}").stdout.split()]

    def destroy(self) -> None:
        for n in range(HOSTS):
            ip("netns", "del", f"{self.prefix}{n}")  # takes its veth pair along
        ip("link", "del", f"{self.prefix}br")


class RanksAcrossHosts(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.hosts = Hosts()
        reason = cls.hosts.unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        cls.hosts.create()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.hosts.destroy()

    @unittest.skipUnless(Path(ADAPTER).exists(), f"the reference adapter is not built ({ADAPTER})")
    def test_reference_across_hosts_and_a_link_cut_mid_case_is_that_cases_timeout(self) -> None:
        # Each namespace has a loopback of its own: a pass means Gloo went over 10.231.0.x.
        cases = ["replicate.parity.multi_module", "replicate.parity.single_module", "replicate.parity.with_kwargs"]
        t0 = time.monotonic()
        got, output = self.run_across_hosts(ADAPTER, cases, cut=cases[1])
        self.assertEqual(got, {c: "timeout" if c == cases[1] else "pass" for c in cases}, output)
        self.assertLess(time.monotonic() - t0, 120, "the cut case waits out --timeout, no more")

    @unittest.skipUnless(Path(PYTORCH).exists(), f"no PyTorch environment ({PYTORCH})")
    def test_pytorch_across_hosts(self) -> None:
        cases = ["replicate.parity.single_module", "fully_shard.parity.flat_root"]
        got, output = self.run_across_hosts(f"{PYTORCH} -m runners.adapters.pytorch", cases)
        self.assertEqual(got, {c: "pass" for c in cases}, output)

    def run_across_hosts(self, adapter: str, cases: list[str], cut: str = "") -> tuple[dict[str, str], str]:
        """Runs cases at HOSTS ranks, one per host; returns their outcomes and the runner's output."""
        out = Path(tempfile.mkdtemp(prefix="ccts-hosts-"))
        self.addCleanup(shutil.rmtree, out, True)
        wrapped = f"{sys.executable} {HERE / 'link_cutter.py'} sh {HERE / 'rank_in_netns.sh'} {adapter}"
        done = subprocess.run([sys.executable, "-m", "runners", "run", "--adapter", wrapped, "--world-sizes", str(HOSTS),
                               "--timeout", "15", "--out", str(out), "-q", *[a for c in cases for a in ("-k", c)]],
                              cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), CCTS_NETNS=self.hosts.prefix,
                                       CCTS_CUT_CASE=cut, CCTS_CUT_RANK="1"))
        report = json.loads((out / "report.json").read_text())
        self.assertEqual(self.hosts.processes(), [], "every rank in every namespace is reaped")
        return {r["case"]: r["outcome"] for r in report["results"]}, done.stdout + done.stderr


if __name__ == "__main__":
    unittest.main()
