"""JUnit XML for CI systems: one testsuite per area, one testcase per result.

Mapping of outcomes:
  pass                      -> plain testcase
  fail                      -> <failure>
  error, crash, timeout     -> <error> (the harness or the adapter broke)
  unsupported, skip         -> <skipped message=...>
  xfail, xpass              -> passing testcase with a <system-out> note; under
                               --strict the runner already records an xpass as fail.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ccts_common import outcomes

from .model import ReportView
from .text import failure_text, stderr_text, visible_text

# XML 1.0 cannot carry control characters, not even as character references.
xml_text = visible_text


def _seconds(value: object) -> str:
    try:
        return f"{float(value or 0.0):.3f}"
    except (TypeError, ValueError):
        return "0.000"


def _element(parent: ET.Element, tag: str, text: str = "", **attrs: object) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text:
        el.text = xml_text(text)
    return el


def _testcase(view: ReportView, suite: ET.Element, result: dict) -> None:
    case = _element(suite, "testcase", name=view.result_name(result), classname=result["area"],
                    time=_seconds(result.get("duration_s")))
    outcome = result["outcome"]
    message = str(result.get("message") or outcome)
    if outcome == "fail":
        _element(case, "failure", failure_text(result), type="fail", message=message)
    elif outcome in outcomes.FAULTS:
        _element(case, "error", failure_text(result), type=outcome, message=message)
    elif outcome in outcomes.NOT_RUN:
        _element(case, "skipped", message=f"{outcome}: {message}")
    elif outcome == "xfail":
        _element(case, "system-out", failure_text(result))
    elif outcome == "xpass":
        _element(case, "system-out", "unexpected pass: the case passed although it is listed "
                 f"as an expected failure ({result.get('xfail_reason') or 'no reason given'}); "
                 f"remove it from the expected-failures file\n{failure_text(result)}")
    if outcome != "pass":
        stderr = stderr_text(result)
        if stderr:
            _element(case, "system-err", stderr)


def _counts(results: list[dict]) -> dict[str, str]:
    seen = [r["outcome"] for r in results]
    return {
        "tests": str(len(seen)),
        "failures": str(seen.count("fail")),
        "errors": str(sum(seen.count(o) for o in outcomes.FAULTS)),
        "skipped": str(sum(seen.count(o) for o in outcomes.NOT_RUN)),
        "time": _seconds(sum(float(r.get("duration_s") or 0.0) for r in results)),
    }


def junit_tree(view: ReportView) -> ET.ElementTree:
    report = view.report
    root = ET.Element("testsuites", {
        "name": xml_text(f"{view.suite_label} on {view.implementation_label}"),
        **_counts(view.results)})
    if isinstance(report.get("duration_s"), (int, float)):
        root.set("time", _seconds(report["duration_s"]))
    properties = {
        "suite": view.suite_label,
        "implementation": view.implementation_label,
        "build": view.build_label,
        "host": view.host_label,
        "command": report.get("command") or "",
        "world_sizes": ",".join(str(ws) for ws in view.requested_world_sizes),
        "partial": "true" if view.partial else "false",
        "score": view.score.headline,
    }
    for area in view.areas:
        results = [r for r in view.results if r["area"] == area]
        suite = _element(root, "testsuite", name=area, **_counts(results))
        if report.get("started"):
            suite.set("timestamp", xml_text(report["started"]))
        if view.host.get("hostname"):
            suite.set("hostname", xml_text(view.host["hostname"]))
        props = _element(suite, "properties")
        for name, value in properties.items():
            _element(props, "property", name=name, value=value)
        for result in results:
            _testcase(view, suite, result)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(view: ReportView, path: Path) -> Path:
    junit_tree(view).write(path, encoding="utf-8", xml_declaration=True)
    return path
