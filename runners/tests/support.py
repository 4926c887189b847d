"""Temporary suites and runner invocations for the self-tests."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FAKE = [sys.executable, str(Path(__file__).with_name("fake_adapter.py"))]


def case(case_id: str, expect: list[Any], steps: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": case_id, "title": case_id, "source": "new", "requirements": ["TEST-RULE-001"],
            "needs": ["fixtures"], "world_sizes": [1],
            "steps": steps or [{"batch": {"as": "v", "shape": [1]}}, {"observe": {"as": "x", "value": "v"}}],
            "expect": expect, **extra}


class TempSuite:
    def __init__(self, cases: list[dict[str, Any]], answers: dict[str, Any] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ccts-selftest-"))
        atexit.register(shutil.rmtree, self.dir, True)
        (self.dir / "spec").mkdir()
        (self.dir / "spec" / "test.md").write_text("# Test\n\n- **TEST-RULE-001** A rule for tests.\n")
        (self.dir / "fixtures").mkdir()
        # Implementation sources whose rule citations validate checks: none unless a test writes some
        # (the real reference/ cites rules a temporary spec/ does not declare).
        (self.dir / "sources").mkdir()
        for c in cases:
            area = c["id"].split(".")[0]
            folder = self.dir / "conformance" / area
            folder.mkdir(parents=True, exist_ok=True)
            (folder / (c["id"].split(".", 1)[1] + ".yaml")).write_text(yaml.safe_dump(c))
        self.answers = self.dir / "answers.json"
        self.answers.write_text(json.dumps(answers or {}))
        self.out = self.dir / "out"

    def args(self) -> list[str]:
        return ["--cases-dir", str(self.dir / "conformance"), "--fixtures-dir", str(self.dir / "fixtures"),
                "--spec-dir", str(self.dir / "spec"), "--sources-dir", str(self.dir / "sources")]

    def run(self, *extra: str, adapter: list[str] | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> tuple[int, str, dict[str, Any]]:
        command = [sys.executable, "-m", "runners", "run", "--out", str(self.out),
                   "--adapter", " ".join(adapter or FAKE), *self.args(), *extra]
        full_env = dict(os.environ, PYTHONPATH=str(ROOT), FAKE_ANSWERS=str(self.answers), **(env or {}))
        p = subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout)
        report = json.loads((self.out / "report.json").read_text()) if (self.out / "report.json").exists() else {}
        return p.returncode, p.stdout + p.stderr, report


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {f"{r['case']}@{r['world_size']}": r["outcome"] for r in report.get("results", [])}
