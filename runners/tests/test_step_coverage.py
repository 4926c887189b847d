"""Each shipped adapter handles every step and observation kind of the schema.

Every step and kind has an example program in spec/schema/case.schema.json
(`x-ccts.example`, ending with that step or kind). Sent to an adapter that
declares what the program needs, it must run without error at world sizes 1
and 2; sent to one that lacks a capability, it may only run or be answered
`unsupported` (the runner would not send it). Both shipped adapters are held
to it, so a step one of them forgot fails here, not in some case."""
import os
import sys
import unittest
from pathlib import Path

from ccts_common import schemas
from runners.execute import default_adapter
from runners.session import RankGroup
from runners.suite import ROOT, Case, Suite, resolved_fixtures
from runners.validate import Validator
from runners.vocabulary import Term, vocabulary

REFERENCE = Path(os.environ.get("CCTS_ADAPTER") or default_adapter())
PYTORCH = f"{sys.executable} -m runners.adapters.pytorch"


def terms() -> list[tuple[str, Term]]:
    vocab = vocabulary()
    return [(f"step {n}", t) for n, t in vocab.steps.items()] + \
           [(f"observation {n}", t) for n, t in vocab.observations.items()]


def example_case(label: str, term: Term) -> Case:
    data = {"id": "vocabulary." + label.replace(" ", "_"), "title": f"The example of {label}", "source": "new",
            "requirements": ["CASES-STEPS-001"], "needs": sorted(vocabulary().program_needs(term.example)),
            "world_sizes": [1, 2], "steps": term.example, "expect": [{"same_across_ranks": "o"}]}
    return Case(data, ROOT / "spec" / "schema" / "case.schema.json", "vocabulary")


class Examples(unittest.TestCase):
    def test_every_step_and_kind_has_an_example_that_ends_with_it(self):
        for label, term in terms():
            self.assertTrue(term.example, f"{label} has no x-ccts.example")
            (last, body), = term.example[-1].items()
            if label.startswith("step "):
                self.assertEqual(last, term.name, label)
            else:
                self.assertEqual((last, [k for k in body if k != "as"]), ("observe", [term.name]), label)

    def test_every_example_is_a_valid_program(self):
        suite = Suite()
        validator = Validator(suite)
        fixtures = suite.fixtures()
        for label, term in terms():
            case = example_case(label, term)
            self.assertEqual(schemas.problems(case.data["steps"], "case.schema.json", "steps"), [], label)
            validator.check_names_and_needs(case, fixtures)
        self.assertEqual(validator.errors, [])


class Coverage:
    """Mixed into one TestCase per adapter."""
    adapter = ""

    def run_examples(self, world_size: int) -> None:
        suite = Suite()
        group = RankGroup(self.adapter, world_size)
        try:
            capabilities = set(group.start(120)["capabilities"])
            for label, term in terms():
                case = example_case(label, term)
                replies = group.run_case(case.data, resolved_fixtures(case, suite), 120)
                declared = set(case.needs) <= capabilities
                for reply in replies:
                    error = reply["error"]
                    if declared:
                        self.assertIsNone(error, f"{label} at world size {world_size}")
                        if label.startswith("observation "):
                            self.assertIn("o", reply["observations"], label)
                    elif error is not None:
                        self.assertEqual(error["kind"], "unsupported", f"{label}: {error}")
        finally:
            group.close()

    def test_world_size_1(self):
        self.run_examples(1)

    def test_world_size_2(self):
        self.run_examples(2)


@unittest.skipUnless(REFERENCE.exists(), f"the reference adapter is not built ({REFERENCE})")
class ReferenceAdapter(Coverage, unittest.TestCase):
    adapter = str(REFERENCE)


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


@unittest.skipUnless(has_torch(), "no PyTorch in this Python")
class PyTorchAdapter(Coverage, unittest.TestCase):
    adapter = PYTORCH


if __name__ == "__main__":
    unittest.main()
