"""Renders index.html in headless Chromium, when it is installed, and reads the DOM it built."""

import subprocess
import tempfile
import unittest
from pathlib import Path

from reports import write_all
from reports.tests import samples
from reports.tests.dom import DomSummary

CHROMIUM = Path("/usr/bin/chromium")


@unittest.skipUnless(CHROMIUM.exists(), f"{CHROMIUM} is not installed: the browser test needs it "
                     "(Debian package 'chromium')")
class BrowserRendering(unittest.TestCase):
    def dump_dom(self, page: Path, profile: Path) -> DomSummary:
        done = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        dom = DomSummary()
        dom.feed(done.stdout)
        dom.close()
        return dom

    def test_scoreboard_renders_and_the_filter_script_runs(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            write_all(samples.mixed_report(), out)
            dom = self.dump_dom(out / "index.html", Path(tmp) / "profile")
        rows = {row[0]: row[1:] for row in dom.tables.get("scoreboard", []) if row}
        self.assertEqual(rows.get("Area"), ["world size 1", "world size 2", "world size 4", "All"])
        self.assertEqual(rows.get("fixtures"), ["2/3 2 pass 1 skip", "1/2 1 pass 1 fail", "1/1 1 pass",
                                                "4/6 4 pass 1 fail 1 skip"])
        self.assertEqual(rows["contract"][2], "missing")
        # The inline filter script ran without errors and rewrote the counter.
        self.assertEqual(dom.text("filter-count"), "Showing 13 of 13 results")
        # Markup in messages stayed text: the page's own script is the only one.
        self.assertEqual(dom.scripts, 1)
        self.assertIn("case-fixtures.toy_model.values-ws2", dom.ids)
        self.assertIn("<script>alert('x')</script>", dom.text("case-fixtures.toy_model.values-ws2"))


if __name__ == "__main__":
    unittest.main()
