import os
import tempfile
import unittest
from collections import Counter
from pathlib import Path

from reports import write_all
from reports.tests import samples
from reports.tests.dom import by_id, classes, parse_xhtml, text_of


class HtmlScoreboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = Path(cls.tmp.name)
        write_all(samples.mixed_report(), cls.out)
        cls.raw = (cls.out / "index.html").read_text(encoding="utf-8")
        cls.root = parse_xhtml(cls.out / "index.html")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def element(self, element_id: str):
        el = by_id(self.root, element_id)
        self.assertIsNotNone(el, f"no element with id {element_id!r}")
        return el

    def test_ids_are_unique(self) -> None:
        ids = Counter(el.get("id") for el in self.root.iter() if el.get("id"))
        self.assertEqual([i for i, n in ids.items() if n > 1], [])

    def test_header_names_implementation_build_host_and_suite(self) -> None:
        dl = list(self.element("facts"))
        facts = {text_of(dt): text_of(dd) for dt, dd in zip(dl[::2], dl[1::2])}
        self.assertEqual(facts["Suite"], "ccts 0.1.0")
        self.assertEqual(facts["Implementation"], "ccts-reference 0.1.0")
        self.assertEqual(facts["Build"], "libtorch 1.13.0, cuda none")
        self.assertEqual(facts["Host"], "testhost, Linux-6.1-x86_64, Python 3.11.2, 2 CPUs")
        self.assertEqual(facts["World sizes"], "1, 2, 4")
        self.assertEqual(facts["Command"], "./ccts run --world-sizes 1,2,4")
        self.assertTrue(facts["Results"].startswith("13: 4 pass 1 fail 1 error"), facts["Results"])
        self.assertIn("1/9 cases, 1/8 rules", text_of(self.element("score")))
        self.assertIsNone(by_id(self.root, "partial-banner"))

    def scoreboard_rows(self) -> dict[str, list]:
        table = self.element("scoreboard")
        rows = {}
        for tr in table.iter("tr"):
            cells = list(tr)
            rows[text_of(cells[0])] = cells[1:]
        return rows

    def test_scoreboard_cells(self) -> None:
        rows = self.scoreboard_rows()
        self.assertEqual([text_of(c) for c in rows["Area"]],
                         ["world size 1", "world size 2", "world size 4", "All"])
        fixtures = rows["fixtures"]
        self.assertEqual(text_of(fixtures[0]), "2/3 2 pass 1 skip")
        self.assertEqual(text_of(fixtures[1]), "1/2 1 pass 1 fail")
        self.assertIn("fail", classes(fixtures[1]))
        self.assertIn("pass", classes(fixtures[2]))
        self.assertEqual(text_of(rows["replicate"][1]), "0/2 1 crash 1 unsupported")
        self.assertEqual(text_of(rows["contract"][0]), "0/3 1 timeout 1 xpass 1 xfail")

    def test_world_sizes_not_run_are_missing_not_zero(self) -> None:
        rows = self.scoreboard_rows()
        for area, index in (("contract", 2), ("replicate", 0)):
            cell = rows[area][index]
            self.assertIn("missing", classes(cell))
            self.assertEqual(text_of(cell), "missing")
        self.assertFalse("0%" in text_of(self.root.find("body")), "a score shown as a percentage")

    def test_each_non_passing_result_is_anchored_once(self) -> None:
        for anchor in ("case-fixtures.toy_model.values-ws2", "case-replicate.buckets.crash-ws2",
                       "case-contract.hooks.order-ws1", "case-contract.protocol.garbage-ws2",
                       "case-contract.fqn.modified-ws1", "case-contract.state.shared-ws1",
                       "case-replicate.parity.net-ws2", "case-fixtures.input.declared-ws1"):
            self.element(anchor)
        self.assertIsNone(by_id(self.root, "case-fixtures.toy_model.parameter_fqns-ws1"))
        links = {a.get("href") for a in self.root.iter("a")}
        self.assertIn("#case-fixtures.toy_model.values-ws2", links)

    def test_failure_detail_has_case_file_rule_text_and_diff(self) -> None:
        article = self.element("case-fixtures.toy_model.values-ws2")
        text = text_of(article)
        self.assertIn("conformance/fixtures/toy_model.values.yaml", text)
        self.assertIn("FIXTURES-FQN-002 Fixture parameter values come from the portable generator.", text)
        self.assertIn("rank 1 · equal (expect[0])", text)
        self.assertIn("./ccts run -k 'fixtures.toy_model.values' --world-sizes 2", text)
        diff = [pre for pre in article.iter("pre") if "diff" in classes(pre)]
        self.assertEqual(len(diff), 1)
        spans = [(span.get("class"), span.text) for span in diff[0].iter("span")]
        self.assertIn(("del", "-    [3.5, 4.0]"), spans)
        self.assertIn(("add", "+    [3.25, 4.0]"), spans)
        self.assertEqual(spans[0], ("header", "--- expected"))

    def test_rank_errors_and_stderr_in_detail(self) -> None:
        text = text_of(self.element("case-replicate.buckets.crash-ws2"))
        self.assertIn("runtime_error in collective (step 4): peer closed connection", text)
        self.assertIn("Segmentation fault (core dumped)", text)

    def test_script_in_messages_is_escaped(self) -> None:
        self.assertNotIn("<script>alert", self.raw)
        self.assertIn("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; a bell \\x07 here", self.raw)
        self.assertEqual(len(list(self.root.iter("script"))), 1)   # the page's own filter
        self.assertNotIn("\x07", self.raw)

    def test_no_external_resources(self) -> None:
        for el in self.root.iter():
            self.assertIsNone(el.get("src"), el.tag)
            if el.tag == "link":
                self.fail("external stylesheet")
        self.assertEqual(len(list(self.root.iter("style"))), 1)

    def test_rule_coverage_table(self) -> None:
        rows = {tr.get("id"): tr for tr in self.element("coverage-table").iter("tr") if tr.get("id")}
        self.assertEqual(rows["rule-FIXTURES-VALUES-001"].get("data-status"), "uncovered")
        self.assertIn("no case", text_of(rows["rule-FIXTURES-VALUES-001"]))
        self.assertEqual(rows["rule-FIXTURES-FQN-001"].get("data-status"), "passing")
        self.assertIn("fixtures.toy_model.parameter_fqns ws1 pass ws2 pass ws4 pass",
                      text_of(rows["rule-FIXTURES-FQN-001"]))
        self.assertEqual(rows["rule-REPLICATE-GRAD-001"].get("data-status"), "failing")
        self.assertIn("no spec declares this rule", text_of(rows["rule-CONTRACT-GHOST-009"]))
        hrefs = {a.get("href") for a in rows["rule-FIXTURES-FQN-002"].iter("a")}
        self.assertIn("#case-fixtures.toy_model.values-ws2", hrefs)

    def test_existing_suite_files_are_linked_relatively(self) -> None:
        row = self.element("rule-FIXTURES-FQN-001")
        hrefs = [a.get("href") for a in row.iter("a") if a.get("href", "").endswith("fixtures.md")]
        self.assertEqual(len(hrefs), 1)
        target = (self.out / hrefs[0]).resolve()
        self.assertTrue(target.samefile(Path(__file__).resolve().parents[2] / "spec" / "fixtures.md"))
        self.assertFalse(os.path.isabs(hrefs[0]))

    def test_expected_failures_and_not_run_sections(self) -> None:
        self.assertIn("the reference does not check buffer FQNs yet",
                      text_of(self.element("case-contract.fqn.modified-ws1")))
        self.assertIn("remove the entry", text_of(self.element("case-contract.state.shared-ws1")))
        self.assertIn("adapter lacks capability 'replicate'",
                      text_of(self.element("case-replicate.parity.net-ws4")))

    def test_results_table_rows_carry_filter_data(self) -> None:
        rows = list(self.element("results").find("tbody"))
        self.assertEqual(len(rows), 13)
        self.assertEqual(Counter(r.get("data-outcome") for r in rows)["pass"], 4)
        self.assertEqual(text_of(self.element("filter-count")), "13 results")


class HtmlPartialRun(unittest.TestCase):
    def test_partial_banner_and_missing_world_sizes(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            write_all(samples.partial_report(), Path(tmp))
            root = parse_xhtml(Path(tmp) / "index.html")
        self.assertIn("Partial run.", text_of(by_id(root, "partial-banner")))
        row = [tr for tr in by_id(root, "scoreboard").iter("tr") if tr.get("data-area") == "fixtures"][0]
        self.assertEqual([text_of(td) for td in row.findall("td")],
                         ["2/2 2 pass", "missing", "missing", "2/2 2 pass"])

    def test_an_empty_run_still_renders(self) -> None:
        report = samples.partial_report()
        report["results"] = []
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_all(report, Path(tmp))
            root = parse_xhtml(Path(tmp) / "index.html")
            md = (Path(tmp) / "report.md").read_text(encoding="utf-8")
        self.assertEqual([p.name for p in paths], ["junit.xml", "report.md", "index.html"])
        self.assertIn("No case ran.", text_of(root))
        self.assertIn("No case ran.", md)


if __name__ == "__main__":
    unittest.main()
