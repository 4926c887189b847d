"""Hand-built report.json dicts ("ccts-report/1") for the writers' tests.

`mixed_report()` has every outcome. Its scoreboard, by area and world size:

  area       ws1                      ws2                  ws4
  contract   xfail, xpass, timeout    error                (missing)
  fixtures   pass, pass, skip         pass, fail           pass
  replicate  (missing)                unsupported, crash   unsupported

Rules: FIXTURES-FQN-001 passing; FIXTURES-FQN-002, CONTRACT-HOOK-001 and
REPLICATE-GRAD-001 failing; FIXTURES-SKIP-001, CONTRACT-API-001 and
CONTRACT-STATE-001 incomplete; FIXTURES-VALUES-001 has no case;
CONTRACT-GHOST-009 is listed by a case but declared by no spec.
"""

from __future__ import annotations

import base64
import copy
import struct
from typing import Any, Optional

SCRIPT_MESSAGE = "observed <script>alert('x')</script> & a bell \x07 here"


def tensor(values: list[float], shape: Optional[list[int]] = None) -> dict:
    """A float32 tensor observation, as adapters send it."""
    data = struct.pack(f"<{len(values)}f", *values)
    return {"kind": "tensor", "dtype": "float32", "shape": shape or [len(values)],
            "data": base64.b64encode(data).decode("ascii")}


def result(case: str, world_size: int, outcome: str, requirements: list[str], *,
           message: str = "", failures: Optional[list[dict]] = None,
           ranks: Optional[list[dict]] = None, xfail_reason: Optional[str] = None,
           duration_s: float = 0.25) -> dict:
    area = case.split(".", 1)[0]
    if ranks is None:
        rank_outcome = "pass" if outcome in ("pass", "xpass") else outcome
        ranks = [{"rank": r, "outcome": rank_outcome, "error": None, "stderr_tail": ""}
                 for r in range(world_size)]
    return {
        "case": case,
        "area": area,
        "title": f"Title of {case}",
        "file": f"conformance/{area}/{case.split('.', 1)[1]}.yaml",
        "source": "new",
        "requirements": requirements,
        "world_size": world_size,
        "backend": "gloo",
        "outcome": outcome,
        "duration_s": duration_s,
        "message": message or ("all expectations held" if outcome == "pass" else outcome),
        "xfail_reason": xfail_reason,
        "failures": failures or [],
        "ranks": ranks,
        "rerun": f"./ccts run -k '{case}' --world-sizes {world_size}",
    }


RULES = {
    "FIXTURES-FQN-001": ("ToyModel's parameters have PyTorch's FQNs.", "Fixtures", "spec/fixtures.md"),
    "FIXTURES-FQN-002": ("Fixture parameter values come from the portable generator.",
                         "Fixtures", "spec/fixtures.md"),
    "FIXTURES-SKIP-001": ("A fixture may declare an input.", "Fixtures", "spec/fixtures.md"),
    "FIXTURES-VALUES-001": ("Buffers are initialised like parameters.", "Fixtures", "spec/fixtures.md"),
    "CONTRACT-API-001": ("contract raises when an API modifies parameter FQNs.", "Contract",
                         "spec/contract.md"),
    "CONTRACT-STATE-001": ("Modules of one call share one state object.", "Contract",
                           "spec/contract.md"),
    "CONTRACT-HOOK-001": ("Forward hooks run in registration order.", "Contract", "spec/contract.md"),
    "REPLICATE-GRAD-001": ("replicate averages gradients across ranks.", "Replicate",
                           "spec/replicate.md"),
}


def _report(results: list[dict], *, summary: dict[str, Any], implementation: str = "ccts-reference",
            version: str = "0.1.0", partial: bool = False, world_sizes: Optional[list[int]] = None) -> dict:
    return {
        "format": "ccts-report/1",
        "suite": {"name": "ccts", "version": "0.1.0"},
        "implementation": {
            "name": implementation, "version": version,
            "capabilities": ["fixtures", "contract"], "backends": ["gloo"], "devices": ["cpu"],
            "build": {"libtorch": "1.13.0", "cuda": None},
        },
        "host": {"hostname": "testhost", "platform": "Linux-6.1-x86_64", "python": "3.11.2",
                 "cpus": 2},
        "command": "./ccts run --world-sizes 1,2,4",
        "started": "2024-11-24T10:00:00+00:00",
        "finished": "2024-11-24T10:00:12+00:00",
        "duration_s": 12.5,
        "partial": partial,
        "world_sizes": world_sizes or [1, 2, 4],
        "rules": {rule_id: {"text": text, "chapter": chapter, "file": file}
                  for rule_id, (text, chapter, file) in RULES.items()},
        "results": results,
        "summary": summary,
    }


def values_failure() -> dict:
    return {
        "check": "equal", "expectation_index": 0, "rank": 1,
        "expected": tensor([1.0, 2.0, 3.5, 4.0], [2, 2]),
        "observed": tensor([1.0, 2.0, 3.25, 4.0], [2, 2]),
        "message": SCRIPT_MESSAGE,
    }


def mixed_report() -> dict:
    results = [
        result("fixtures.toy_model.parameter_fqns", 1, "pass", ["FIXTURES-FQN-001"]),
        result("fixtures.toy_model.parameter_fqns", 2, "pass", ["FIXTURES-FQN-001"]),
        result("fixtures.toy_model.parameter_fqns", 4, "pass", ["FIXTURES-FQN-001"]),
        result("fixtures.toy_model.values", 1, "pass", ["FIXTURES-FQN-002"]),
        result("fixtures.toy_model.values", 2, "fail", ["FIXTURES-FQN-002"],
               message=SCRIPT_MESSAGE, failures=[values_failure()],
               ranks=[{"rank": 0, "outcome": "pass", "error": None, "stderr_tail": ""},
                      {"rank": 1, "outcome": "fail", "error": None, "stderr_tail": ""}]),
        result("fixtures.input.declared", 1, "skip", ["FIXTURES-SKIP-001"],
               message="excluded by --skip"),
        result("contract.fqn.modified", 1, "xfail", ["CONTRACT-API-001"],
               message="expected error fqn_modified, observed no error",
               xfail_reason="the reference does not check buffer FQNs yet",
               failures=[{"check": "error", "expectation_index": 1, "rank": 0,
                          "expected": {"kind": "fqn_modified", "phase": "apply"},
                          "observed": None, "message": "no error was raised"}]),
        result("contract.state.shared", 1, "xpass", ["CONTRACT-STATE-001"],
               xfail_reason="state sharing was broken"),
        result("contract.hooks.order", 1, "timeout", ["CONTRACT-HOOK-001"],
               message="no result within 30 s"),
        result("contract.protocol.garbage", 2, "error", ["CONTRACT-GHOST-009"],
               message="rank 1 wrote a line that is not JSON"),
        result("replicate.parity.net", 2, "unsupported", ["REPLICATE-GRAD-001"],
               message="adapter lacks capability 'replicate'"),
        result("replicate.parity.net", 4, "unsupported", ["REPLICATE-GRAD-001"],
               message="adapter lacks capability 'replicate'"),
        result("replicate.buckets.crash", 2, "crash", ["REPLICATE-GRAD-001"],
               message="rank 1 exited with signal 11",
               ranks=[{"rank": 0, "outcome": "error",
                       "error": {"kind": "runtime_error", "phase": "collective",
                                 "message": "peer closed connection", "step": 4},
                       "stderr_tail": "gloo: connection reset"},
                      {"rank": 1, "outcome": "crash", "error": None,
                       "stderr_tail": "Segmentation fault (core dumped)"}]),
    ]
    by_outcome: dict[str, int] = {}
    for r in results:
        by_outcome[r["outcome"]] = by_outcome.get(r["outcome"], 0) + 1
    summary = {"total": len(results), "by_outcome": by_outcome,
               "cases": {"passed": 1, "total": 9},
               "rules": {"covered": 7, "passing": 1, "total": 8}}
    return _report(results, summary=summary)


def partial_report() -> dict:
    """A run of the fixtures area at world size 1 only, of the three requested."""
    results = [
        result("fixtures.toy_model.parameter_fqns", 1, "pass", ["FIXTURES-FQN-001"]),
        result("fixtures.toy_model.values", 1, "pass", ["FIXTURES-FQN-002"]),
    ]
    summary = {"total": 2, "by_outcome": {"pass": 2}, "cases": {"passed": 2, "total": 2},
               "rules": {"covered": 2, "passing": 2, "total": 8}}
    return _report(results, partial=True, summary=summary)


def other_implementation_report() -> dict:
    """Another implementation that ran world sizes 1 and 2 only."""
    results = [
        result("fixtures.toy_model.parameter_fqns", 1, "pass", ["FIXTURES-FQN-001"]),
        result("fixtures.toy_model.parameter_fqns", 2, "pass", ["FIXTURES-FQN-001"]),
        result("fixtures.toy_model.values", 1, "pass", ["FIXTURES-FQN-002"]),
        result("fixtures.toy_model.values", 2, "pass", ["FIXTURES-FQN-002"]),
        result("replicate.parity.net", 2, "pass", ["REPLICATE-GRAD-001"]),
    ]
    summary = {"total": 5, "by_outcome": {"pass": 5}, "cases": {"passed": 3, "total": 3},
               "rules": {"covered": 3, "passing": 3, "total": 8}}
    return _report(results, implementation="torch", version="2.4.0", world_sizes=[1, 2],
                   summary=summary)


def without_summary(report: dict) -> dict:
    report = copy.deepcopy(report)
    del report["summary"]
    return report
