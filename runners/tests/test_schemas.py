"""The JSON Schemas of spec/schema/ are valid, accept what the suite and the
runner produce, and make an ill-formed adapter reply an `error`."""
import json
import shutil
import unittest
from pathlib import Path

import jsonschema
import yaml

from ccts_common import outcomes as vocabulary
from ccts_common import schemas
from runners.suite import ROOT
from runners.tests.support import TempSuite, case, outcomes

MESSAGES = "adapter-messages.schema.json"
OK = {"observations": {"x": {"kind": "json", "value": 1}}}


class SchemaFiles(unittest.TestCase):
    def test_every_schema_is_a_valid_draft_2020_12_schema(self) -> None:
        names = sorted(p.name for p in schemas.SCHEMA_DIR.glob("*.schema.json"))
        self.assertEqual(names, ["adapter-messages.schema.json", "case.schema.json", "fixture.schema.json",
                                 "report.schema.json"])
        for name in names:
            with self.subTest(name):
                jsonschema.Draft202012Validator.check_schema(json.loads((schemas.SCHEMA_DIR / name).read_text()))

    def test_the_fixture_files_match_their_schema(self) -> None:
        for path in sorted((ROOT / "fixtures").glob("*.yaml")):
            with self.subTest(path.name):
                self.assertEqual(schemas.problems(yaml.safe_load(path.read_text()), "fixture.schema.json"), [])

    def test_fixture_schema_names_the_field(self) -> None:
        bad = {"classes": {"A": {"members": [{"name": "l", "module": {"class": "Linear", "in": 2}}],
                                 "forward": {"params": ["x"], "body": [{"op": "mm", "a": "x", "as": "y"}],
                                             "return": "y"}}},
               "fixtures": [{"name": "A", "root": "A", "source": "new"}]}
        self.assertEqual(schemas.problems(bad, "fixture.schema.json"), [
            "classes.A.forward.body[0]: 'b' is a required property",
            "classes.A.members[0].module: 'out' is a required property"])

    def test_observations(self) -> None:
        tensor = {"kind": "tensor", "dtype": "float32", "shape": [1], "data": "AACAPw=="}
        good = [tensor, {"kind": "named_tensors", "items": [["w", tensor]]}, {"kind": "strings", "items": ["a"]},
                {"kind": "json", "value": None}, {"kind": "error", "error": None},
                {"kind": "error", "error": {"kind": "assertion", "phase": "apply", "message": "m", "step": "0"}}]
        bad = [{**tensor, "dtype": "float8"}, {**tensor, "data": "AACAPw"}, {**tensor, "shape": [-1]},
               {"kind": "named_tensors", "items": [["w", {"kind": "strings", "items": []}]]},
               {"kind": "strings", "items": [1]}, {"kind": "json"}, {"kind": "picture"},
               {"kind": "error", "error": {"kind": "oops", "phase": "apply", "message": "m"}},
               {"kind": "error", "error": {"kind": "assertion", "phase": "lunch", "message": "m"}}]
        for obs in good:
            with self.subTest(good=obs):
                self.assertEqual(schemas.problems(obs, MESSAGES, "observation"), [])
        for obs in bad:
            with self.subTest(bad=obs):
                self.assertNotEqual(schemas.problems(obs, MESSAGES, "observation"), [])


class OutcomeVocabulary(unittest.TestCase):
    def test_the_groups_name_exactly_the_report_schemas_outcomes(self) -> None:
        self.assertEqual(sorted(vocabulary.OUTCOMES), sorted(vocabulary.schema_outcomes()))
        self.assertEqual(len(set(vocabulary.OUTCOMES)), len(vocabulary.OUTCOMES))
        enum = schemas.document("report.schema.json")["$defs"]["outcome"]["enum"]
        self.assertEqual(list(vocabulary.schema_outcomes()), enum)

    def test_an_outcome_the_groups_do_not_know_is_an_error(self) -> None:
        with self.assertRaises(schemas.SchemaFileError) as ctx:
            vocabulary.check(vocabulary.schema_outcomes() + ("flaky",))
        self.assertIn("gives no meaning to ['flaky']", str(ctx.exception))
        with self.assertRaises(schemas.SchemaFileError) as ctx:
            vocabulary.check(tuple(o for o in vocabulary.schema_outcomes() if o != "skip"))
        self.assertIn("knows ['skip'] the schema does not", str(ctx.exception))

    def test_the_writers_use_it(self) -> None:
        import reports.model

        self.assertEqual(reports.model.OUTCOMES, vocabulary.OUTCOMES)
        self.assertEqual(reports.model.FAILING_OUTCOMES, frozenset(vocabulary.FAILING))


class RunnerMessages(unittest.TestCase):
    def test_what_the_runner_sends_matches_the_protocol(self) -> None:
        steps = [{"build": {"fixture": "CompositeModel", "as": "m", "seed": 0}},
                 {"observe": {"as": "x", "parameter_fqns": "m"}}]
        suite = TempSuite([case("t.sent", [{"equal": {"actual": "x", "value": 1}}], steps=steps, world_sizes=[2])],
                          {"t.sent": OK})
        shutil.copy(ROOT / "fixtures" / "composable.yaml", suite.dir / "fixtures")
        log = suite.dir / "received"
        code, output, report = suite.run("--world-sizes", "2", env={"FAKE_RECEIVED": str(log)})
        self.assertEqual(outcomes(report), {"t.sent@2": "pass"}, output)
        for rank in (0, 1):
            messages = [json.loads(line) for line in Path(f"{log}.{rank}").read_text().splitlines()]
            self.assertEqual([m["type"] for m in messages], ["hello", "run", "bye"])
            for message, definition in zip(messages, ("runner_hello", "run", "bye")):
                self.assertEqual(schemas.problems(message, MESSAGES, definition), [], definition)
                self.assertEqual(schemas.problems(message, MESSAGES), [], definition)
            run = messages[1]
            self.assertEqual((run["rank"], run["world_size"]), (rank, 2))
            # only the fixture the steps build, with only the classes its root reaches
            self.assertEqual(list(run["fixtures"]), ["CompositeModel"])
            self.assertEqual(sorted(run["fixtures"]["CompositeModel"]["classes"]), ["CompositeModel", "UnitModule"])
            self.assertEqual(run["case"]["steps"], steps)

    def test_the_report_matches_its_schema(self) -> None:
        cases = [case("t.good", [{"equal": {"actual": "x", "value": 1}}]),
                 case("t.bad", [{"equal": {"actual": "x", "value": 2}}]),
                 case("t.c_crash", [{"equal": {"actual": "x", "value": 1}}], world_sizes=[2])]
        suite = TempSuite(cases, {"t.good": OK, "t.bad": OK})
        _, output, report = suite.run("--world-sizes", "1,2")
        self.assertEqual(outcomes(report), {"t.good@1": "pass", "t.bad@1": "fail", "t.c_crash@2": "crash"}, output)
        self.assertEqual(schemas.problems(report, "report.schema.json"), [])
        self.assertEqual(report["rules"]["TEST-RULE-001"]["text"], "A rule for tests.")
        self.assertEqual(report["summary"]["rules"], {"covered": 1, "passing": 0, "total": 1})


class IllFormedReplies(unittest.TestCase):
    def test_an_ill_formed_result_is_an_error_and_the_run_goes_on(self) -> None:
        bad_tensor = {"observations": {"x": {"kind": "tensor", "dtype": "float8", "shape": [1], "data": "AA=="}}}
        bad_error = {"observations": {}, "error": {"kind": "oops", "phase": "apply", "message": "m", "step": "0"}}
        cases = [case(f"t.{name}", [{"equal": {"actual": "x", "value": 1}}])
                 for name in ("a_tensor", "b_error", "c_fine")]
        suite = TempSuite(cases, {"t.a_tensor": bad_tensor, "t.b_error": bad_error, "t.c_fine": OK})
        code, output, report = suite.run("--world-sizes", "1")
        self.assertEqual(outcomes(report), {"t.a_tensor@1": "error", "t.b_error@1": "error", "t.c_fine@1": "pass"},
                         output)
        self.assertEqual(code, 1)
        messages = {r["case"]: r["message"] for r in report["results"]}
        self.assertIn("ill-formed 'result'", messages["t.a_tensor"])
        self.assertIn("observations.x.dtype", messages["t.a_tensor"])
        self.assertIn("error.kind", messages["t.b_error"])

    def test_a_hello_naming_another_protocol_is_an_error(self) -> None:
        suite = TempSuite([case("t.a", [{"equal": {"actual": "x", "value": 1}}])], {"t.a": OK})
        code, output, report = suite.run("--world-sizes", "1", env={"FAKE_PROTOCOL": "3"})
        self.assertEqual(outcomes(report), {"t.a@1": "error"}, output)
        self.assertIn("speaks protocol 3; it was offered 2", report["results"][0]["message"])
        self.assertEqual(code, 1)

    def test_an_adapter_that_refuses_every_protocol_is_an_error_naming_each_refusal(self) -> None:
        suite = TempSuite([case("t.a", [{"equal": {"actual": "x", "value": 1}}])], {"t.a": OK})
        code, output, report = suite.run("--world-sizes", "1", env={"FAKE_PROTOCOLS": "7"})
        self.assertEqual(outcomes(report), {"t.a@1": "error"}, output)
        message = report["results"][0]["message"]
        self.assertIn("refused hello (protocol 2): protocol version 2 is not supported", message)
        self.assertIn("refused hello (protocol 1): protocol version 1 is not supported", message)


class Protocols(unittest.TestCase):
    """Protocol 2: the case reaches the adapter without what the runner judges, and
    the runner derives every error's phase; protocol 1 adapters still work."""
    STEPS = [{"batch": {"as": "a", "shape": [2]}}, {"batch": {"as": "b", "shape": [2]}},
             {"raises": {"as": "err", "do": [{"mse_loss": {"input": "a", "target": "b", "as": "l"}}]}},
             {"observe": {"as": "x", "value": "a"}}]
    # Protocol 1 sent phases: this one is wrong on purpose, and the runner replaces it.
    RAISED = {"observations": {"x": {"kind": "json", "value": 1},
                               "err": {"kind": "error", "error": {"kind": "runtime_error", "phase": "apply",
                                                                  "message": "boom", "step": "2.do.0"}}}}

    def run_with(self, protocols: str) -> tuple[str, dict, list]:
        expect = [{"equal": {"actual": "x", "value": 1}},
                  {"error": {"actual": "err", "kind": "runtime_error", "phase": "forward", "message": "boom"}}]
        suite = TempSuite([case("t.p", expect, steps=self.STEPS, tolerance={"atol": 0.5})], {"t.p": self.RAISED})
        log = suite.dir / "received"
        code, output, report = suite.run("--world-sizes", "1", env={"FAKE_PROTOCOLS": protocols,
                                                                    "FAKE_RECEIVED": str(log)})
        self.assertEqual(outcomes(report), {"t.p@1": "pass"}, output)
        self.assertEqual(code, 0)
        return output, report, [json.loads(line) for line in Path(f"{log}.0").read_text().splitlines()]

    def test_protocol_2_sends_no_expectations_and_derives_phases(self) -> None:
        output, report, messages = self.run_with("2")
        hello, run = messages[0], messages[-2]
        self.assertEqual(hello["protocol"], 2)
        self.assertNotIn("expect", run["case"])
        self.assertNotIn("tolerance", run["case"])
        self.assertEqual(run["case"]["steps"], self.STEPS)
        self.assertEqual(report["implementation"]["protocol"], 2)
        self.assertNotIn("deprecated", output)

    def test_a_protocol_1_adapter_is_offered_protocol_1_and_warned_about(self) -> None:
        output, report, messages = self.run_with("1")
        hellos = [m for m in messages if m["type"] == "hello"]
        self.assertEqual([h["protocol"] for h in hellos], [2, 1])  # the first process refused 2; a fresh one took 1
        run = next(m for m in messages if m["type"] == "run")
        self.assertEqual(run["case"]["expect"][0], {"equal": {"actual": "x", "value": 1}})
        self.assertEqual(report["implementation"]["protocol"], 1)
        self.assertIn("the adapter speaks protocol 1, which is deprecated", output)


if __name__ == "__main__":
    unittest.main()
