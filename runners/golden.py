"""`golden`: golden values from the oracle. Runs every selected case that has
`golden` expectations through an adapter (default: the PyTorch adapter) at
world size 1 and writes rank 0's observation into each golden file, with the
name, version and build of what produced it. `--check` writes nothing and
exits 1 when a file would change (regenerating and diffing is one command).

A file produced by another version of the oracle (say PyTorch 2.11's, checked
with Debian's 1.13), or by the same one on another CPU (MKL and oneDNN pick
kernels by instruction set, so the last bits of a sum move), is not expected
to match bit for bit: `--check` then asks whether this oracle agrees with it
within the case's tolerance, as the runner judges every implementation, and
says so."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .execute import RunOptions, Runner, select
from .expectations import case_tolerance, close
from .session import RankFault
from .suite import Suite, resolved_fixtures, suite_from
from .validate import GOLDEN_FORMAT

PYTORCH_ADAPTER = f"{sys.executable} -m runners.adapters.pytorch"


def golden_expectations(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["golden"] for e in data.get("expect") or [] if isinstance(e, dict) and "golden" in e]


def render(producer: dict[str, Any], case_id: str, observation: dict[str, Any]) -> str:
    doc = {"format": GOLDEN_FORMAT, "produced_by": producer, "case": case_id, "world_size": 1,
           "observation": observation}
    return json.dumps(doc, indent=1) + "\n"


def describe(doc: dict[str, Any]) -> str:
    producer = doc.get("produced_by") or {}
    return f"{producer.get('name')} {producer.get('version')}"


def agrees_within_tolerance(old_text: str, case: dict[str, Any], new_text: str) -> bool:
    """True when this oracle's observation is within the case's tolerance of the
    file's: another version of the oracle, or the same one on another CPU (its
    kernels pick other instructions, and the last bits of a sum move)."""
    try:
        old = json.loads(old_text)
    except json.JSONDecodeError:
        return False
    tolerance = case_tolerance(case)
    return close(json.loads(new_text)["observation"], old.get("observation"),
                 tolerance["rtol"], tolerance["atol"]) is None


def main(args: argparse.Namespace) -> int:
    suite: Suite = suite_from(args)
    options = RunOptions(adapter=args.adapter or PYTORCH_ADAPTER, world_sizes=[1], patterns=args.k or [],
                         timeout=args.timeout, quiet=True)
    cases = [c for c in select(suite.load_cases(), options) if golden_expectations(c.data)]
    runner = Runner(suite, options)
    changed = 0
    try:
        for case in cases:
            try:
                group = runner.group(1)
                replies = group.run_case(case.data, resolved_fixtures(case, suite), options.timeout)
            except RankFault as fault:
                print(f"{case.id}: {fault}", file=sys.stderr)
                return 2
            reply = replies[0]
            if reply.get("error"):
                print(f"{case.id}: the oracle raised {reply['error']}", file=sys.stderr)
                return 2
            implementation = runner.implementation or {}
            producer = {"name": implementation.get("name"), "version": implementation.get("version"),
                        "build": implementation.get("build")}
            for body in golden_expectations(case.data):
                path = case.file.parent / body["file"]
                text = render(producer, case.id, reply["observations"][body["actual"]])
                old = path.read_text(encoding="utf-8") if path.exists() else None
                if old == text:
                    continue
                if args.check and old is not None and agrees_within_tolerance(old, case.data, text):
                    print(f"agrees within tolerance: {path} (produced by {describe(json.loads(old))}, "
                          f"checked with {producer.get('name')} {producer.get('version')} on this machine)")
                    continue
                changed += 1
                if args.check:
                    print(f"would change: {path}")
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
                    print(f"wrote {path}")
    finally:
        runner.close()
    print(f"{len(cases)} cases with golden values, {changed} files {'differ' if args.check else 'written'}")
    return 1 if args.check and changed else 0
