"""spec/ADAPTERS.md's worked example is what the runner and the reference adapter
really exchange: every message it shows is valid, the `run` it shows is what
the runner sends for that case, and the reference replies what it shows."""
import json
import os
import unittest
from pathlib import Path

from ccts_common import schemas
from runners.execute import default_adapter
from runners.session import JUDGE_FIELDS, RankGroup
from runners.suite import PROTOCOL_VERSION, ROOT, Case, Suite, resolved_fixtures

ADAPTERS_MD = ROOT / "spec" / "ADAPTERS.md"
REFERENCE = Path(os.environ.get("CCTS_ADAPTER") or default_adapter())
DEFINITIONS = {(">", "hello"): "runner_hello", ("<", "hello"): "adapter_hello", (">", "run"): "run",
               ("<", "result"): "result", (">", "bye"): "bye", ("<", "bye"): "bye"}


def worked_example() -> list[tuple[str, dict]]:
    """The `>` and `<` lines of the worked example, in order."""
    section = ADAPTERS_MD.read_text(encoding="utf-8").split("## A worked example", 1)[1].split("\n## ", 1)[0]
    return [(line[0], json.loads(line[2:])) for line in section.splitlines() if line[:2] in ("> ", "< ")]


class WorkedExample(unittest.TestCase):
    def test_every_message_is_valid_and_of_this_protocol(self):
        messages = worked_example()
        self.assertEqual([(d, m["type"]) for d, m in messages],
                         [(">", "hello"), ("<", "hello"), (">", "run"), ("<", "result"), (">", "bye"), ("<", "bye")])
        for direction, message in messages:
            definition = DEFINITIONS[(direction, message["type"])]
            self.assertEqual(schemas.problems(message, "adapter-messages.schema.json", definition), [], definition)
        self.assertEqual([m["protocol"] for _, m in messages if m["type"] == "hello"], [PROTOCOL_VERSION] * 2)

    def test_the_run_shown_is_what_the_runner_sends(self):
        run = next(m for _, m in worked_example() if m["type"] == "run")
        self.assertFalse(set(JUDGE_FIELDS) & set(run["case"]), "protocol 2 sends no expectations")
        case = Case(run["case"], ADAPTERS_MD, "fixtures")
        self.assertEqual(run["fixtures"], resolved_fixtures(case, Suite()))

    @unittest.skipUnless(REFERENCE.exists(), f"the reference adapter is not built ({REFERENCE})")
    def test_the_reference_replies_what_is_shown(self):
        messages = worked_example()
        run = next(m for d, m in messages if m["type"] == "run")
        shown = next(m for d, m in messages if m["type"] == "result")
        group = RankGroup(str(REFERENCE), run["world_size"])
        try:
            group.start(60)
            replies = group.run_case(run["case"], run["fixtures"], 60)
        finally:
            group.close()
        reply = replies[run["rank"]]
        for result in (reply, shown):
            result.pop("duration_s")
        self.assertEqual(reply, shown)


if __name__ == "__main__":
    unittest.main()
