"""Fuzzing the runner's intake: case files, expected-failure files and reports, random
or mutated from the real ones, never give a traceback. A case file is loaded or stood
in for, then validated into problems; an expected-failures file is read or rejected
with SuiteError; a report is rendered or rejected with ReportError.

Bounded and derandomized in CI; CCTS_FUZZ_EXAMPLES=N runs N random examples per
property instead (how the closing notes' longer runs were made)."""
import json
import math
import os
import shutil
import tempfile
import unittest
from pathlib import Path
from typing import Any

import yaml

from runners.tests.support import ROOT

try:
    from hypothesis import HealthCheck, given, settings, strategies as st
except ImportError:  # the runner's own environment may lack it; ./ccts setup installs it
    st = None

LONG = int(os.environ.get("CCTS_FUZZ_EXAMPLES", "0"))
REAL_CASES = sorted((ROOT / "conformance").glob("*/*.yaml"))
REAL_REPORT = ROOT / "reports" / "snapshot" / "reference-gloo.json"

if st is not None:
    FUZZ = settings(max_examples=LONG or 150, derandomize=not LONG, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))
    scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
               | st.text(max_size=20) | st.sampled_from(["", "x", "float32", "Linear", "fully_shard", "@", "*"]))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=10) | st.sampled_from(["id", "steps", "expect", "as",
                                                                                   "world_sizes", "model"]),
                                            inner, max_size=4), max_leaves=12)

    def mutate(tree: Any, data: Any) -> Any:
        """One random edit of a JSON-like tree: a node replaced, a key removed or added."""
        if isinstance(tree, dict) and tree and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(tree, key=str)))
            edit = data.draw(st.sampled_from(["descend", "replace", "delete", "add"]))
            if edit == "descend":
                return {**tree, key: mutate(tree[key], data)}
            if edit == "replace":
                return {**tree, key: data.draw(values)}
            if edit == "delete":
                return {k: v for k, v in tree.items() if k != key}
            return {**tree, data.draw(st.text(max_size=8)): data.draw(values)}
        if isinstance(tree, list) and tree and data.draw(st.booleans()):
            i = data.draw(st.integers(0, len(tree) - 1))
            edit = data.draw(st.sampled_from(["descend", "replace", "delete", "duplicate"]))
            if edit == "descend":
                return tree[:i] + [mutate(tree[i], data)] + tree[i + 1:]
            if edit == "replace":
                return tree[:i] + [data.draw(values)] + tree[i + 1:]
            if edit == "delete":
                return tree[:i] + tree[i + 1:]
            return tree[:i + 1] + tree[i:]
        return data.draw(values)


def finite(tree: Any) -> Any:
    """YAML and JSON writers cannot all spell nan and inf: those become strings."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return str(tree)
    if isinstance(tree, dict):
        return {str(k): finite(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [finite(v) for v in tree]
    return tree


@unittest.skipIf(st is None, "hypothesis is not installed (./ccts setup installs it)")
class FuzzLoading(unittest.TestCase):
    def setUp(self) -> None:
        from runners.suite import Suite
        self.dir = Path(tempfile.mkdtemp(prefix="ccts-fuzz-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.suite = Suite()
        self.suite.cases_dir = self.dir / "conformance"

    def load_and_validate(self, content: bytes) -> None:
        """A case file with this content: loaded or stood in for, then validated; no exception."""
        from runners.validate import case_problems
        folder = self.suite.cases_dir / "fully_shard"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "fuzzed.yaml").write_bytes(content)
        cases, broken = self.suite.load_cases_or_stand_ins()
        problems = case_problems(self.suite, [c for c in cases if c.file not in broken])
        for c in cases:  # what run reports for the file: a reason, as text
            reasons = [broken[c.file]] if c.file in broken else problems.get(c.file, [])
            self.assertTrue(all(isinstance(r, str) and r for r in reasons))

    if st is not None:
        @FUZZ
        @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
        def test_random_case_files(self, content: bytes) -> None:
            self.load_and_validate(content)

        @FUZZ
        @given(st.sampled_from(REAL_CASES), st.data())
        def test_mutated_real_cases(self, path: Path, data: Any) -> None:
            tree = yaml.safe_load(path.read_text())
            self.load_and_validate(yaml.safe_dump(finite(mutate(tree, data)), allow_unicode=True).encode())

        @FUZZ
        @given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
        def test_random_expected_failure_files(self, content: bytes) -> None:
            from runners.execute import load_xfail
            from runners.suite import SuiteError
            path = self.dir / "xfail.txt"
            path.write_bytes(content)
            try:
                load_xfail(path)
            except SuiteError as e:
                self.assertIn(str(path), str(e))

        @FUZZ
        @given(st.data())
        def test_mutated_and_random_reports(self, data: Any) -> None:
            import reports
            from reports.model import ReportError
            real = json.loads(REAL_REPORT.read_text())
            real["results"] = real["results"][:3]  # keeps each example quick
            content = data.draw(st.sampled_from(["mutated", "random"]))
            tree = mutate(real, data) if content == "mutated" else data.draw(values)
            path = self.dir / "report.json"
            path.write_text(json.dumps(finite(tree)))
            try:
                reports.write_all(reports.load_report(path), self.dir / "rendered")
            except ReportError as e:
                self.assertTrue(str(e))


if __name__ == "__main__":
    unittest.main()
