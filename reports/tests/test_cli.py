import io
import json
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from reports.__main__ import main
from reports.tests import samples


class CommandLine(unittest.TestCase):
    def test_render_and_compare(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "run" / "report.json"
            report.parent.mkdir()
            report.write_text(json.dumps(samples.mixed_report()), encoding="utf-8")
            out = io.StringIO()
            with redirect_stdout(out):
                self.assertEqual(main(["render", str(report)]), 0)
                self.assertEqual(main(["compare", str(report), str(report), "--out", tmp]), 0)
            written = sorted(Path(line).name for line in out.getvalue().split())
            self.assertEqual(written, ["compare.html", "compare.md", "index.html", "junit.xml", "report.md"])
            self.assertTrue((report.parent / "index.html").is_file())

    def test_errors_go_to_stderr_with_status_1(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            report.write_text("{", encoding="utf-8")
            err = io.StringIO()
            with redirect_stderr(err):
                self.assertEqual(main(["render", str(report)]), 1)
        self.assertIn("not valid JSON", err.getvalue())
        self.assertIn(str(report), err.getvalue())


if __name__ == "__main__":
    unittest.main()
