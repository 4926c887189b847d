"""The case vocabulary is defined once, by spec/schema/case.schema.json: the docs
say the same, and the runner reads phases, names and needs from it."""
import re
import unittest

from ccts_common import schemas
from runners.suite import ROOT
from runners.vocabulary import fixture_names_in, phase_of_error, step_at, vocabulary

CASES_MD = ROOT / "spec" / "CASES.md"


def table_after(heading: str) -> dict[str, list[str]]:
    """The first Markdown table under `## heading` of spec/CASES.md: first cell (without
    backticks) -> the row's cells."""
    text = CASES_MD.read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        # `\|` inside a cell is a literal bar, not a column
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) < 2 or set(cells[0]) <= {"-"} or not cells[0].startswith("`"):
            continue
        name = re.match(r"`([a-z_]+)", cells[0]).group(1)
        rows.setdefault(name, cells)
    return rows


def words_in_backticks(cell: str) -> set[str]:
    return {w for chunk in re.findall(r"`([^`]*)`", cell) for w in re.findall(r"[a-z_]+", chunk)}


def capabilities_in(cell: str) -> tuple[str, ...]:
    return tuple(sorted(w.strip() for w in cell.split(",") if w.strip()))


class DocsSayWhatTheSchemaSays(unittest.TestCase):
    def test_every_step_with_its_fields_phase_and_needs(self):
        rows = table_after("Steps")
        vocab = vocabulary()
        self.assertEqual(list(rows), list(vocab.steps), "spec/CASES.md's step table, in the schema's order")
        for name, term in vocab.steps.items():
            fields, phase, needs = rows[name][1], rows[name][2], rows[name][3]
            documented = words_in_backticks(fields) | (set(vocab.observations) if name == "observe" else set())
            missing = set(term.fields()) - documented
            self.assertEqual(missing, set(), f"spec/CASES.md: step {name} does not document these fields")
            self.assertEqual(phase, term.phase, f"spec/CASES.md: phase of step {name}")
            self.assertEqual(capabilities_in(needs), tuple(sorted(term.needs)), f"spec/CASES.md: needs of {name}")

    def test_every_observation_kind_with_its_phase_and_needs(self):
        rows = table_after("Observations")
        vocab = vocabulary()
        self.assertEqual(list(rows), list(vocab.observations), "spec/CASES.md's observation table")
        for kind, term in vocab.observations.items():
            self.assertEqual(rows[kind][3], term.phase, f"spec/CASES.md: phase of observation {kind}")
            self.assertEqual(capabilities_in(rows[kind][4]), tuple(sorted(term.needs)),
                             f"spec/CASES.md: needs of observation {kind}")

    def test_every_expectation(self):
        self.assertEqual(set(table_after("Expectations")), set(vocabulary().expectations))

    def test_phases_are_the_protocols_phases(self):
        messages = schemas.document("adapter-messages.schema.json")
        phases = set(messages["$defs"]["error"]["properties"]["phase"]["enum"])
        case_phases = set(vocabulary().defs["expectation"]["properties"]["error"]["properties"]["phase"]["enum"])
        used = {t.phase for t in vocabulary().steps.values()} | {t.phase for t in vocabulary().observations.values()}
        self.assertEqual(phases, case_phases)
        self.assertLessEqual(used, phases)

    def test_needs_are_capabilities_adapters_declare(self):
        vocab = vocabulary()
        needed = {n for t in (*vocab.steps.values(), *vocab.observations.values()) for n in t.needs}
        needed |= set(vocab.defs["api"]["x-ccts"]["builtin"].values())
        self.assertLessEqual(needed, set(vocab.defs["capability"]["enum"]))


class PhaseOfAnError(unittest.TestCase):
    STEPS = [
        {"build": {"fixture": "Net", "as": "m"}},
        {"raises": {"as": "e", "do": [{"forward": {"model": "m"}}, {"observe": {"as": "s", "state_dict": "m"}}]}},
        {"repeat": {"times": 2, "do": [{"track": {"tracker": "t", "do": [{"backward": {"of": "y"}}]}}]}},
        {"load_state_dict": {"model": "m", "from": "m"}},
        {"observe": {"as": "p", "named_parameters": "m"}},
    ]

    def test_the_innermost_step_decides(self):
        for path, phase in [("0", "build"), ("1", "build"), ("1.do.0", "forward"), ("1.do.1", "state_dict"),
                            ("2.do.0", "tracker"), ("2.do.0.do.0", "backward"), ("3", "load_state_dict"),
                            ("4", "observe")]:
            self.assertEqual(phase_of_error(self.STEPS, path), phase, path)

    def test_no_step_or_a_path_the_case_has_not_is_setup(self):
        for path in ("", None, "9", "1.do.7", "1.x.0", "0.do.0", "a"):
            self.assertEqual(phase_of_error(self.STEPS, path), "build", path)
        self.assertIsNone(step_at(self.STEPS, "1.do.7"))
        self.assertEqual(step_at(self.STEPS, "2.do.0.do.0"), ("backward", {"of": "y"}))

    def test_fixtures_named_anywhere_in_order_of_first_use(self):
        steps = [{"input": {"fixture": "B", "as": "x"}},
                 {"repeat": {"times": 1, "do": [{"build": {"fixture": "A", "as": "m"}},
                                                {"build": {"fixture": "B", "as": "n"}}]}}]
        self.assertEqual(fixture_names_in(steps), ["B", "A"])


if __name__ == "__main__":
    unittest.main()
