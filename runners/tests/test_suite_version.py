"""The suite version is written once, in the top-level CMakeLists.txt's
project(ccts VERSION ...): the runner reads it there and the reference's adapter
is compiled with it."""
import os
import tempfile
import unittest
from pathlib import Path

from runners.execute import default_adapter
from runners.session import RankGroup
from runners.suite import ROOT, SuiteError, suite_version

ADAPTER = os.environ.get("CCTS_ADAPTER") or default_adapter()


class SuiteVersion(unittest.TestCase):
    def test_read_from_the_project_line(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp) / "CMakeLists.txt"
            project.write_text("cmake_minimum_required(VERSION 3.18)\nproject(ccts\n  VERSION 1.22.333 LANGUAGES CXX)\n")
            self.assertEqual(suite_version(project), "1.22.333")

    def test_a_missing_line_or_file_is_a_clear_error(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp) / "CMakeLists.txt"
            project.write_text("cmake_minimum_required(VERSION 3.18)\nproject(other VERSION 1.0.0)\n")
            with self.assertRaises(SuiteError) as ctx:
                suite_version(project)
            self.assertIn(f"{project}: no 'project(ccts VERSION X.Y.Z ...)'", str(ctx.exception))
            with self.assertRaises(SuiteError) as ctx:
                suite_version(Path(tmp) / "none.txt")
            self.assertIn("none.txt: cannot be read", str(ctx.exception))

    def test_the_repository_declares_one(self) -> None:
        self.assertRegex(suite_version(), r"^\d+\.\d+\.\d+$")
        self.assertEqual(suite_version(), suite_version(ROOT / "CMakeLists.txt"))

    @unittest.skipUnless(Path(ADAPTER).exists(), f"the reference adapter is not built ({ADAPTER})")
    def test_the_reference_adapter_says_the_same_version(self) -> None:
        group = RankGroup(ADAPTER, 1)
        try:
            hello = group.start(60)
        finally:
            group.close()
        self.assertEqual((hello["name"], hello["version"]), ("ccts-reference", suite_version()),
                         f"{ADAPTER} is built from another version of CMakeLists.txt: rebuild it")


if __name__ == "__main__":
    unittest.main()
