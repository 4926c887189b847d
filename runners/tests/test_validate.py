"""validate names the file, the case and the field of every problem."""
import subprocess
import sys
import unittest

import yaml

from runners.tests.support import ROOT, TempSuite, case

LINEAR = {"class": "Linear", "in": 2, "out": 2}
NET = {"classes": {"Net": {"members": [{"name": f"fc{i}", "module": dict(LINEAR)} for i in (1, 2)],
                           "forward": {"params": ["x"],
                                       "body": [{"op": "call", "module": "fc1", "args": ["x"], "as": "h"},
                                                {"op": "call", "module": "fc2", "args": ["h"], "as": "out"}],
                                       "return": "out"}}},
       "fixtures": [{"name": "Net", "root": "Net", "source": "new", "input": {"args": [{"shape": [4, 2]}]}}]}


def with_net(cases: list) -> TempSuite:
    suite = TempSuite(cases)
    (suite.dir / "fixtures" / "net.yaml").write_text(yaml.safe_dump(NET))
    return suite


def validate(suite: TempSuite) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-m", "runners", "validate", *suite.args()], capture_output=True,
                       text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    return p.returncode, p.stdout + p.stderr


class Validate(unittest.TestCase):
    def test_good_case_is_valid(self):
        code, output = validate(TempSuite([case("t.ok", [{"equal": {"actual": "x", "value": 1}}],
                                                steps=[{"batch": {"as": "v", "shape": [2]}},
                                                       {"observe": {"as": "x", "value": "v"}}])]))
        self.assertEqual(code, 0, output)

    def test_errors_name_file_case_and_field(self):
        bad_rule = case("t.rule", [{"equal": {"actual": "x", "value": 1}}], requirements=["TEST-NOPE-001"])
        bad_fixture = case("t.fixture", [{"equal": {"actual": "x", "value": 1}}],
                           steps=[{"build": {"fixture": "Nope", "as": "m"}}, {"observe": {"as": "x", "parameter_fqns": "m"}}])
        bad_step = case("t.step", [{"equal": {"actual": "x", "value": 1}}], steps=[{"explode": {"as": "x"}}])
        bad_ref = case("t.ref", [{"equal": {"actual": "y", "value": 1}}], steps=[{"observe": {"as": "x", "value": "v"}}])
        wrong_area = case("t.area", [{"equal": {"actual": "x", "value": 1}}])
        suite = TempSuite([bad_rule, bad_fixture, bad_step, bad_ref, wrong_area,
                           case("t.rule2", [{"equal": {"actual": "x", "value": 1}}])])
        (suite.dir / "conformance" / "t" / "rule2.yaml").write_text(
            (suite.dir / "conformance" / "t" / "rule.yaml").read_text())
        (suite.dir / "conformance" / "other").mkdir()
        (suite.dir / "conformance" / "t" / "area.yaml").rename(suite.dir / "conformance" / "other" / "area.yaml")
        code, output = validate(suite)
        self.assertEqual(code, 1)
        for expected in [
            "rule.yaml: case t.rule: field requirements[0]: unknown rule TEST-NOPE-001",
            "fixture.yaml: case t.fixture: field steps[0].build.fixture: unknown fixture 'Nope'",
            "step.yaml: case t.step: field steps[0]: ",
            "ref.yaml: case t.ref: field steps[0].observe.value: 'v' is not a value defined before this step",
            "ref.yaml: case t.ref: field expect[0].equal: no step observes 'y'",
            "area.yaml: case t.area: field id: must start with its folder's area 'other.'",
            "rule2.yaml: case t.rule: field id: duplicate id",
        ]:
            self.assertIn(expected, output)


class RuleCitations(unittest.TestCase):
    """Rules cited in implementation sources (reference/, runners/adapters/) exist in spec/*.md."""

    def test_a_cited_id_that_is_not_a_rule_is_an_error_naming_file_and_line(self):
        suite = TempSuite([case("t.ok", [{"equal": {"actual": "x", "value": 1}}],
                                steps=[{"batch": {"as": "v", "shape": [2]}}, {"observe": {"as": "x", "value": "v"}}])])
        include = suite.dir / "sources" / "include"
        include.mkdir()
        (include / "api.h").write_text("// UTF-8 text, SHA-256: no citations.\n"
                                       "// Follows TEST-RULE-001 and the TEST-RULE-* family.\n"
                                       "void f();  // see TEST-RULE-002\n")
        (suite.dir / "sources" / "expected-failures.txt").write_text("# TEST-NOPE-* is not a family\n")
        code, output = validate(suite)
        self.assertEqual(code, 1, output)
        self.assertIn("include/api.h:3: cites TEST-RULE-002, which is not a rule of spec/*.md", output)
        self.assertIn("expected-failures.txt:1: cites TEST-NOPE-*, which matches no rule of spec/*.md", output)
        self.assertNotIn("api.h:1", output)
        self.assertNotIn("api.h:2", output)
        self.assertIn("1 cases, 2 errors", output)

    def test_the_suites_own_sources_cite_only_rules(self):
        from runners.citations import check_citations
        from runners.suite import SOURCES_DIRS, Suite

        self.assertEqual(check_citations(SOURCES_DIRS, Suite().rules()), [])


class ReplicateAndFullyShardVocabulary(unittest.TestCase):
    """The steps and observations of spec/replicate.md and spec/fully_shard.md."""

    def test_every_new_step_and_observation_is_valid(self):
        steps = [
            {"build": {"fixture": "Net", "as": "m"}},
            {"build": {"fixture": "Net", "as": "n", "seed": 1}},
            {"apply": {"api": "fully_shard", "to": "m.fc1", "kwargs": {"reshard_after_forward": 2,
                                                                     "ignored_params": ["m.fc1.bias"]}}},
            {"apply": {"api": "replicate", "to": ["n"], "kwargs": {"ignored_modules": ["n.fc1"], "device_id": "cpu",
                                                                   "bucket_cap_mb": 1.5}}},
            {"set_requires_gradient_sync": {"model": "m", "value": False}},
            {"unshard": {"model": "m.fc1"}},
            {"reshard": {"model": "m.fc1"}},
            {"load_state_dict": {"model": "m.fc2", "from": "n.fc2"}},
            {"batch": {"as": "x", "shape": [4, 2]}},
            {"forward": {"model": "m.fc1", "args": ["x"], "as": "y"}},
            {"mse_loss": {"input": "y", "target": "x", "as": "loss"}},
            {"observe": {"as": "loss", "value": "loss"}},
            {"observe": {"as": "t", "type_name": "m.fc1"}},
            {"observe": {"as": "d", "replicate_device_ids": "n"}},
            {"observe": {"as": "g", "grad_storage_groups": "n"}},
            {"observe": {"as": "pl", "parameter_layout": "m"}},
            {"observe": {"as": "sl", "state_dict_layout": "m"}},
            {"observe": {"as": "fp", "full_parameters": "m"}},
            {"observe": {"as": "mp", "managed_parameters": {"api": "fully_shard", "module": "m.fc1"}}},
        ]
        code, output = validate(with_net([case("t.ok", [{"same_across_ranks": "loss"}], steps=steps,
                                               needs=["replicate", "fully_shard"])]))
        self.assertEqual(code, 0, output)

    def test_names_used_before_they_are_defined(self):
        steps = [
            {"build": {"fixture": "Net", "as": "m"}},
            {"mse_loss": {"input": "y", "target": "m", "as": "loss"}},
            {"load_state_dict": {"model": "m", "from": "n"}},
            {"set_requires_gradient_sync": {"model": "n.fc1", "value": True}},
            {"unshard": {"model": "n"}},
            {"reshard": {"model": "n"}},
            {"apply": {"api": "replicate", "to": "m", "kwargs": {"ignored_modules": ["n.fc1"]}}},
            {"forward": {"model": "n.fc1", "args": []}},
            {"observe": {"as": "mp", "managed_parameters": {"api": "replicate", "module": "n"}}},
            {"observe": {"as": "st", "state": {"api": "replicate", "module": "n.fc1", "key": "k"}}},
            {"observe": {"as": "t", "type_name": "n"}},
        ]
        code, output = validate(with_net([case("t.refs", [{"equal": {"actual": "t", "value": "Net"}}], steps=steps,
                                               needs=["replicate", "fully_shard", "contract"])]))
        self.assertEqual(code, 1)
        for expected in [
            "field steps[1].mse_loss.input: 'y' is not a value defined before this step",
            "field steps[1].mse_loss.target: 'm' is not a value defined before this step",
            "field steps[2].load_state_dict.from: 'n' is not a model built before this step",
            "field steps[3].set_requires_gradient_sync.model: 'n.fc1' is not a model built before this step",
            "field steps[4].unshard.model: 'n' is not a model built before this step",
            "field steps[5].reshard.model: 'n' is not a model built before this step",
            "field steps[6].apply.kwargs.ignored_modules[0]: 'n.fc1' is not a model built before this step",
            "field steps[7].forward.model: 'n.fc1' is not a model built before this step",
            "field steps[8].observe.managed_parameters.module: 'n' is not a model built before this step",
            "field steps[9].observe.state.module: 'n.fc1' is not a model built before this step",
            "field steps[10].observe.type_name: 'n' is not a model built before this step",
        ]:
            self.assertIn(expected, output)
        self.assertNotIn("steps[2].load_state_dict.model", output)

    def test_references_of_every_kind_nested_steps_included(self):
        steps = [
            {"build": {"fixture": "Net", "as": "m"}},
            {"raises": {"as": "err", "do": [{"forward": {"model": "m", "args": ["x"], "kwargs": {"k": "w"}}}]}},
            {"repeat": {"times": 1, "do": [{"backward": {"of": "y"}}, {"slice": {"from": "z", "as": "s"}}]}},
            {"apply": {"api": "nope", "to": ["m", "q.fc1"], "kwargs": {"ignored_params": ["p.fc1.weight"]}}},
            {"track": {"tracker": "t", "do": [{"clear_user_hooks": {"tracker": "t"}}]}},
            {"observe": {"as": "ev", "tracker_events": "t"}},
        ]
        code, output = validate(with_net([case("t.kinds", [{"error": {"actual": "err", "kind": "runtime_error"}}],
                                               steps=steps, needs=["contract", "mod_tracker"])]))
        self.assertEqual(code, 1)
        for expected in [
            "field steps[1].raises.do[0].forward.args[0]: 'x' is not a value defined before this step",
            "field steps[1].raises.do[0].forward.kwargs.k: 'w' is not a value defined before this step",
            "field steps[2].repeat.do[0].backward.of: 'y' is not a value defined before this step",
            "field steps[2].repeat.do[1].slice.from: 'z' is not a value defined before this step",
            "field steps[3].apply.api: 'nope' is not an API defined before this step or built in",
            "field steps[3].apply.to[1]: 'q.fc1' is not a model built before this step",
            "field steps[3].apply.kwargs.ignored_params[0]: 'p.fc1.weight' is not in a model built before this step",
            "field steps[4].track.tracker: 't' is not a tracker created before this step",
            "field steps[4].track.do[0].clear_user_hooks.tracker: 't' is not a tracker created before this step",
            "field steps[5].observe.tracker_events: 't' is not a tracker created before this step",
        ]:
            self.assertIn(expected, output)
        self.assertNotIn("steps[3].apply.to[0]", output)

    def test_needs_cover_every_step_observation_and_built_in_api(self):
        steps = [
            {"build": {"fixture": "Net", "as": "m"}},
            {"apply": {"api": "replicate", "to": "m"}},
            {"unshard": {"model": "m"}},
            {"tracker": {"as": "t"}},
            {"define_api": {"name": "api"}},
            {"observe": {"as": "r", "registry": "m"}},
        ]
        code, output = validate(with_net([case("t.needs", [{"equal": {"actual": "r", "value": None}}],
                                               steps=steps, needs=["fixtures", "replicate"])]))
        self.assertEqual(code, 1)
        self.assertIn("field needs: the steps need ['contract', 'fully_shard', 'mod_tracker']", output)
        code, output = validate(with_net([case("t.needs", [{"equal": {"actual": "r", "value": None}}], steps=steps,
                                               needs=["replicate", "fully_shard", "mod_tracker", "contract"])]))
        self.assertEqual(code, 0, output)

    def test_schema_of_the_new_steps(self):
        steps = [
            {"build": {"fixture": "Net", "as": "m"}},
            {"set_requires_gradient_sync": {"model": "m", "value": "no"}},
            {"mse_loss": {"input": "x", "as": "loss"}},
            {"unshard": {"model": "m", "async": True}},
            {"observe": {"as": "mp", "managed_parameters": {"api": "replicate", "module": "m", "extra": 1}}},
            {"observe": {"as": "mq", "managed_parameters": {"module": "m"}}},
            {"apply": {"api": "replicate", "to": "m", "kwargs": []}},
        ]
        code, output = validate(with_net([case("t.schema", [{"no_error": "mp"}], steps=steps)]))
        self.assertEqual(code, 1)
        for expected in [
            "field steps[1].set_requires_gradient_sync.value: 'no' is not of type 'boolean'",
            "field steps[2].mse_loss: 'target' is a required property",
            "field steps[3].unshard: Additional properties are not allowed ('async' was unexpected)",
            "field steps[4].observe.managed_parameters: Additional properties are not allowed ('extra' was unexpected)",
            "field steps[5].observe.managed_parameters: 'api' is a required property",
            "field steps[6].apply.kwargs: [] is not of type 'object'",
        ]:
            self.assertIn(expected, output)


if __name__ == "__main__":
    unittest.main()
