import json
import tempfile
import unittest
from pathlib import Path

from reports.model import ReportError, ReportView, check_report, load_report_file
from reports.tests import samples


class CellsAndScores(unittest.TestCase):
    def setUp(self) -> None:
        self.view = ReportView(samples.mixed_report())

    def test_cells_count_outcomes_per_area_and_world_size(self) -> None:
        self.assertEqual(self.view.cell("fixtures", 1).summary(), "2/3 (1 skip)")
        self.assertEqual(self.view.cell("fixtures", 2).summary(), "1/2 (1 fail)")
        self.assertEqual(self.view.cell("fixtures", 4).summary(), "1/1")
        self.assertEqual(self.view.cell("replicate", 2).summary(), "0/2 (1 crash, 1 unsupported)")
        self.assertEqual(self.view.total.total, 13)
        self.assertEqual(self.view.total.passed, 4)

    def test_an_area_not_run_at_a_world_size_has_no_cell(self) -> None:
        self.assertIsNone(self.view.cell("contract", 4))
        self.assertIsNone(self.view.cell("replicate", 1))

    def test_cell_status(self) -> None:
        self.assertEqual(self.view.cell("fixtures", 4).status, "pass")
        self.assertEqual(self.view.cell("fixtures", 2).status, "fail")
        self.assertEqual(self.view.cell("replicate", 4).status, "partial")

    def test_headline_comes_from_the_summary(self) -> None:
        self.assertEqual(self.view.score.headline, "1/9 cases, 1/8 rules")
        self.assertEqual(self.view.score.coverage, "7/8 rules covered by a case")

    def test_headline_computed_from_results_without_a_summary(self) -> None:
        view = ReportView(samples.without_summary(samples.mixed_report()))
        self.assertEqual(
            (view.score.cases_passed, view.score.cases_total, view.score.rules_passing,
             view.score.rules_covered, view.score.rules_total),
            (1, 9, 1, 7, 8))

    def test_rule_coverage(self) -> None:
        status = {rule_id: c.status for rule_id, c in self.view.rule_coverage.items()}
        self.assertEqual(status, {
            "CONTRACT-API-001": "incomplete",
            "CONTRACT-GHOST-009": "failing",
            "CONTRACT-HOOK-001": "failing",
            "CONTRACT-STATE-001": "incomplete",
            "FIXTURES-FQN-001": "passing",
            "FIXTURES-FQN-002": "failing",
            "FIXTURES-SKIP-001": "incomplete",
            "FIXTURES-VALUES-001": "uncovered",
            "REPLICATE-GRAD-001": "failing",
        })
        self.assertFalse(self.view.rule("CONTRACT-GHOST-009").declared)
        self.assertEqual([c.id for c in self.view.uncovered_rules], ["FIXTURES-VALUES-001"])
        self.assertEqual(self.view.rule("REPLICATE-GRAD-001").cases,
                         ["replicate.buckets.crash", "replicate.parity.net"])

    def test_names_and_anchors(self) -> None:
        r = samples.mixed_report()["results"][4]
        self.assertEqual(self.view.result_name(r), "fixtures.toy_model.values@ws2")
        self.assertEqual(self.view.anchor(r), "case-fixtures.toy_model.values-ws2")

    def test_backend_disambiguates_when_a_run_mixes_backends(self) -> None:
        report = samples.mixed_report()
        twin = dict(report["results"][0], backend="nccl")
        report["results"].append(twin)
        view = ReportView(report)
        self.assertEqual(view.result_name(twin), "fixtures.toy_model.parameter_fqns@ws1[nccl]")
        self.assertEqual(view.anchor(twin), "case-fixtures.toy_model.parameter_fqns-ws1-nccl")

    def test_world_sizes_include_requested_ones_without_results(self) -> None:
        view = ReportView(samples.partial_report())
        self.assertEqual(view.world_sizes, [1, 2, 4])
        self.assertIsNone(view.cell("fixtures", 2))
        self.assertTrue(view.partial)


class ReportChecks(unittest.TestCase):
    def assertRaisesNaming(self, report: dict, *fragments: str) -> None:
        with self.assertRaises(ReportError) as ctx:
            check_report(report, "out/report.json")
        for fragment in fragments:
            self.assertIn(fragment, str(ctx.exception))

    def test_wrong_format(self) -> None:
        report = samples.mixed_report()
        report["format"] = "ccts-report/2"
        self.assertRaisesNaming(report, "out/report.json", "'format'", "ccts-report/2")

    def test_unknown_outcome_names_result_case_and_field(self) -> None:
        report = samples.mixed_report()
        report["results"][3]["outcome"] = "passed"
        self.assertRaisesNaming(report, "results[3]", "fixtures.toy_model.values", "'outcome'",
                                "'passed'")

    def test_world_size_must_be_an_integer(self) -> None:
        report = samples.mixed_report()
        report["results"][0]["world_size"] = True
        self.assertRaisesNaming(report, "results[0]", "'world_size'")

    def test_missing_results(self) -> None:
        report = samples.mixed_report()
        del report["results"]
        self.assertRaisesNaming(report, "'results'")

    def test_missing_area(self) -> None:
        report = samples.mixed_report()
        del report["results"][2]["area"]
        self.assertRaisesNaming(report, "results[2]", "'area'")

    def test_the_samples_are_valid(self) -> None:
        for report in (samples.mixed_report(), samples.partial_report(),
                       samples.other_implementation_report()):
            check_report(report, "sample")

    def test_invalid_json_names_file_and_line(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.json"
            path.write_text('{"format": "ccts-report/1",\n "results": [,]}', encoding="utf-8")
            with self.assertRaises(ReportError) as ctx:
                load_report_file(path)
            self.assertIn(str(path), str(ctx.exception))
            self.assertIn("line 2", str(ctx.exception))

    def test_round_trip_through_json(self) -> None:
        report = json.loads(json.dumps(samples.mixed_report()))
        self.assertEqual(ReportView(report).score.headline, "1/9 cases, 1/8 rules")


if __name__ == "__main__":
    unittest.main()
