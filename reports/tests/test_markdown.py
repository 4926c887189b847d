import tempfile
import unittest
from pathlib import Path

from reports import write_all
from reports.markdown import md_code, md_text
from reports.tests import samples


def render(report: dict) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        write_all(report, Path(tmp))
        return (Path(tmp) / "report.md").read_text(encoding="utf-8")


def table_row(markdown: str, first_cell: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


class MarkdownReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.md = render(samples.mixed_report())

    def test_headline_has_denominators(self) -> None:
        self.assertIn("**Score: 1/9 cases, 1/8 rules** (7/8 rules covered by a case)", self.md)

    def test_no_partial_banner_on_a_full_run(self) -> None:
        self.assertNotIn("Partial run", self.md)

    def test_area_table_shows_counts_and_missing(self) -> None:
        self.assertEqual(table_row(self.md, "Area"), ["Area", "ws 1", "ws 2", "ws 4", "All"])
        self.assertEqual(table_row(self.md, "contract"),
                         ["contract", "0/3 (1 timeout, 1 xpass, 1 xfail)", "0/1 (1 error)", "—",
                          "0/4 (1 error, 1 timeout, 1 xpass, 1 xfail)"])
        self.assertEqual(table_row(self.md, "fixtures"),
                         ["fixtures", "2/3 (1 skip)", "1/2 (1 fail)", "1/1", "4/6 (1 fail, 1 skip)"])
        self.assertEqual(table_row(self.md, "replicate")[1], "—")
        self.assertNotIn("0%", self.md)

    def test_failure_lines(self) -> None:
        self.assertIn("## Failures (4)", self.md)
        self.assertIn("- `fixtures.toy_model.values@ws2` **fail**: observed \\<script\\>", self.md)
        self.assertIn("  - rank 1, `equal (expect[0])`: observed", self.md)
        self.assertIn('expected `{"dtype": "float32", "shape": [2, 2], "values": [[1.0, 2.0], [3.5, 4.0]]}`',
                      self.md)
        self.assertIn('observed `{"dtype": "float32", "shape": [2, 2], "values": [[1.0, 2.0], [3.25, 4.0]]}`',
                      self.md)
        self.assertIn("  - rules: `FIXTURES-FQN-002`", self.md)
        self.assertIn("  - rerun: `./ccts run -k 'fixtures.toy_model.values' --world-sizes 2`", self.md)
        self.assertIn("  - rank 0: error — runtime\\_error in collective (step 4): peer closed connection",
                      self.md)

    def test_html_in_messages_is_escaped(self) -> None:
        self.assertNotIn("<script>", self.md)
        self.assertNotIn("\x07", self.md)

    def test_expected_failures_with_reasons(self) -> None:
        self.assertIn("## Expected failures (2)", self.md)
        self.assertIn("`contract.fqn.modified@ws1` **xfail** (still failing); reason: the reference does "
                      "not check buffer FQNs yet", self.md)
        self.assertIn("`contract.state.shared@ws1` **xpass** (unexpected pass", self.md)

    def test_unsupported_and_skipped_counts(self) -> None:
        self.assertIn("## Unsupported (2)\n\nBy area: replicate 2.", self.md)
        self.assertIn("- `replicate.parity.net@ws4`: adapter lacks capability 'replicate'", self.md)
        self.assertIn("## Skipped (1)\n\nBy area: fixtures 1.", self.md)

    def test_uncovered_rules(self) -> None:
        self.assertIn("## Rules with no case (1)", self.md)
        self.assertIn("- **FIXTURES-VALUES-001** Buffers are initialised like parameters. (spec/fixtures.md)",
                      self.md)
        self.assertIn("`CONTRACT-GHOST-009`, listed by `contract.protocol.garbage`", self.md)

    def test_partial_run_banner(self) -> None:
        md = render(samples.partial_report())
        self.assertIn("> **Partial run.**", md)
        self.assertIn("**Score: 2/2 cases, 2/8 rules**", md)
        self.assertEqual(table_row(md, "fixtures"), ["fixtures", "2/2", "—", "—", "2/2"])
        self.assertIn("## Rules with no case in this run (6)", md)


class Escaping(unittest.TestCase):
    def test_md_text(self) -> None:
        self.assertEqual(md_text("a|b <i>*x*</i>\nnext"), "a\\|b \\<i\\>\\*x\\*\\</i\\> next")

    def test_md_code_with_backticks(self) -> None:
        self.assertEqual(md_code("plain"), "`plain`")
        self.assertEqual(md_code("a `b` c"), "`` a `b` c ``")


if __name__ == "__main__":
    unittest.main()
