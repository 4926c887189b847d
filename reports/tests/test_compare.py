import json
import tempfile
import unittest
from pathlib import Path

from reports import ReportError, render_compare
from reports.tests import samples
from reports.tests.dom import by_id, classes, parse_xhtml, text_of


def md_rows(markdown: str, section: str) -> list[list[str]]:
    """The table rows (header included) of a `## section` of the Markdown."""
    text = markdown.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]


class Compare(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        base = Path(cls.tmp.name)
        cls.paths = []
        for name, report in (("reference", samples.mixed_report()),
                             ("torch", samples.other_implementation_report())):
            (base / name).mkdir()
            path = base / name / "report.json"
            path.write_text(json.dumps(report), encoding="utf-8")
            cls.paths.append(path)
        cls.written = render_compare(cls.paths, base / "compare")
        cls.md = (base / "compare" / "compare.md").read_text(encoding="utf-8")
        cls.root = parse_xhtml(base / "compare" / "compare.html")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def test_writes_both_files(self) -> None:
        self.assertEqual([p.name for p in self.written], ["compare.md", "compare.html"])

    def test_markdown_grid_with_missing_world_sizes(self) -> None:
        rows = {(r[0], r[1]): r[2:] for r in md_rows(self.md, "Results by area")}
        self.assertEqual(rows[("Area", "World size")], ["ccts-reference 0.1.0", "torch 2.4.0"])
        self.assertEqual(rows[("fixtures", "2")], ["1/2 (1 fail)", "2/2"])
        self.assertEqual(rows[("fixtures", "4")], ["1/1", "—"])
        self.assertEqual(rows[("replicate", "2")], ["0/2 (1 crash, 1 unsupported)", "1/1"])
        self.assertEqual(rows[("contract", "1")], ["0/3 (1 timeout, 1 xpass, 1 xfail)", "—"])
        self.assertEqual(rows[("**All**", "4")], ["1/2 (1 unsupported)", "—"])
        self.assertNotIn("0/0", self.md)
        self.assertNotIn("0%", self.md)

    def test_markdown_headline_scores(self) -> None:
        rows = {r[0]: r[1:] for r in md_rows(self.md, "Implementations")}
        self.assertEqual(rows["Score"], ["**1/9 cases, 1/8 rules**", "**3/3 cases, 3/8 rules**"])
        self.assertEqual(rows["World sizes"], ["1, 2, 4", "1, 2"])

    def test_differences_list_only_disagreements(self) -> None:
        rows = {r[0]: r[1:] for r in md_rows(self.md, "Differences")}
        self.assertEqual(rows["`fixtures.toy_model.values@ws2`"], ["fail", "pass"])
        self.assertEqual(rows["`replicate.parity.net@ws4`"], ["unsupported", "—"])
        self.assertNotIn("`fixtures.toy_model.parameter_fqns@ws1`", rows)
        self.assertIn("## Differences (10)", self.md)

    def test_html_grid(self) -> None:
        table = by_id(self.root, "scoreboard")
        head = [text_of(th) for th in table.find("thead").findall("tr")[1]]
        self.assertEqual(head, ["ws 1", "ws 2", "ws 4"] * 2)
        row = [tr for tr in table.iter("tr") if tr.get("data-area") == "fixtures"][0]
        cells = row.findall("td")
        self.assertEqual([text_of(c) for c in cells],
                         ["2/3 2 pass 1 skip", "1/2 1 pass 1 fail", "1/1 1 pass",
                          "2/2 2 pass", "2/2 2 pass", "—"])
        self.assertIn("missing", classes(cells[5]))
        contract = [tr for tr in table.iter("tr") if tr.get("data-area") == "contract"][0]
        self.assertEqual([text_of(c) for c in contract.findall("td")][3:], ["—", "—", "—"])
        self.assertFalse("0%" in text_of(self.root.find("body")))

    def test_html_names_each_implementation(self) -> None:
        text = text_of(by_id(self.root, "implementations-table"))
        self.assertIn("ccts-reference 0.1.0", text)
        self.assertIn("torch 2.4.0", text)
        self.assertIn("1/9 cases, 1/8 rules", text)
        self.assertIn("libtorch 1.13.0, cuda none", text)

    def test_a_run_off_gloo_cpu_names_its_placement(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name, backend, device in (("gloo", "gloo", None), ("nccl", "nccl", "cuda")):
                report = samples.partial_report()
                for r in report["results"]:
                    r["backend"] = backend
                    if device:
                        r["device"] = device
                path = Path(tmp) / f"{name}.json"
                path.write_text(json.dumps(report), encoding="utf-8")
                paths.append(path)
            render_compare(paths, Path(tmp))
            md = (Path(tmp) / "compare.md").read_text(encoding="utf-8")
        header = md_rows(md, "Results by area")[0]
        self.assertEqual(header[2:], ["ccts-reference 0.1.0", "ccts-reference 0.1.0 (nccl/cuda)"])

    def test_same_implementation_twice_gets_distinct_labels(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name in ("monday", "tuesday"):
                (Path(tmp) / name).mkdir()
                path = Path(tmp) / name / "report.json"
                path.write_text(json.dumps(samples.partial_report()), encoding="utf-8")
                paths.append(path)
            render_compare(paths, Path(tmp))
            md = (Path(tmp) / "compare.md").read_text(encoding="utf-8")
        header = md_rows(md, "Results by area")[0]
        self.assertEqual(header[2:], ["ccts-reference 0.1.0 (monday/report.json)",
                                      "ccts-reference 0.1.0 (tuesday/report.json)"])
        self.assertIn("> **Partial runs**", md)
        self.assertIn("None: every result has the same outcome", md)

    def test_a_bad_report_names_its_file(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "broken.json"
            report = samples.mixed_report()
            report["results"][1]["outcome"] = "green"
            path.write_text(json.dumps(report), encoding="utf-8")
            with self.assertRaises(ReportError) as ctx:
                render_compare([self.paths[0], path], Path(tmp))
        self.assertIn("broken.json", str(ctx.exception))
        self.assertIn("outcome", str(ctx.exception))

    def test_no_reports(self) -> None:
        with tempfile.TemporaryDirectory() as tmp, self.assertRaises(ReportError):
            render_compare([], Path(tmp))


if __name__ == "__main__":
    unittest.main()
