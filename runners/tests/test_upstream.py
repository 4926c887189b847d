"""spec/UPSTREAM.md says, for every upstream test and fixture model, exactly
which cases port it; where the upstream files are at hand (../shared/seeds),
it lists every test they define."""
import re
import unittest
from collections import defaultdict

from runners.suite import ROOT, Suite

UPSTREAM_MD = ROOT / "spec" / "UPSTREAM.md"
SEEDS = ROOT.parent / "shared" / "seeds"


def rows() -> dict[str, str]:
    """`<file>::<test>` -> its cases cell, for every table row of UPSTREAM.md."""
    out: dict[str, str] = {}
    file = None
    for line in UPSTREAM_MD.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## (\S+\.py)$", line)
        if heading:
            file = heading.group(1)
            continue
        row = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if row and file:
            key = f"{file}::{row.group(1)}"
            if key in out:
                raise AssertionError(f"spec/UPSTREAM.md lists {key} twice")
            out[key] = row.group(2)
    return out


class Upstream(unittest.TestCase):
    def test_each_row_lists_exactly_the_cases_that_cite_it(self):
        citing: dict[str, set[str]] = defaultdict(set)
        for case in Suite().load_cases():
            if case.data.get("source") != "new":
                citing[case.data.get("source")].add(case.id)
        table = rows()
        for source, cases in citing.items():
            self.assertIn(source, table, f"spec/UPSTREAM.md has no row for {source} (cited by {sorted(cases)})")
        for source, cell in table.items():
            listed = set(re.findall(r"`([a-z0-9_.]+)`", cell))
            if not listed:
                self.assertTrue("out of scope:" in cell or "not ported yet:" in cell,
                                f"{source}: a row without cases says why")
            self.assertEqual(listed, citing.get(source, set()), f"spec/UPSTREAM.md, row {source}")

    def test_the_fsdp2_counts_are_those_of_its_rows(self):
        text = UPSTREAM_MD.read_text(encoding="utf-8")
        said = re.search(r"Of (\d+) tests, (\d+) can be checked on the CPU; (\d+) of those are ported\.", text)
        self.assertIsNotNone(said, "spec/UPSTREAM.md states the FSDP2 counts")
        cells = [cell for key, cell in rows().items() if key.startswith("test_fully_shard_")]
        ported = sum(1 for cell in cells if re.search(r"`[a-z0-9_.]+`", cell))
        waiting = sum(1 for cell in cells if "not ported yet:" in cell)
        self.assertEqual([int(n) for n in said.groups()], [len(cells), ported + waiting, ported])

    @unittest.skipUnless(SEEDS.is_dir(), f"the upstream files are not at hand ({SEEDS})")
    def test_every_test_of_the_upstream_files_has_a_row(self):
        table = rows()
        files = {key.split("::")[0] for key in table}
        for name in sorted(files):
            path = SEEDS / name
            if not path.exists():
                continue
            cls = None
            for line in path.read_text(encoding="utf-8").splitlines():
                found = re.match(r"^class (\w+)\(", line)
                if found:
                    cls = found.group(1)
                test = re.match(r"^    def (test_\w+)\(", line)
                if test and cls:
                    self.assertIn(f"{name}::{cls}::{test.group(1)}", table)


if __name__ == "__main__":
    unittest.main()
