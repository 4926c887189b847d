"""./ccts mutate (runners/mutate.py) on a small catalogue, one area: a real
bug is killed by name, a rewrite that changes nothing survives (and counts as
equivalent, with its reason), a mutant of a module the area never imports is
unexercised, the pinned PyTorch's file is untouched, and a catalogue mistake
is an error naming the mutant and the field. Needs the pinned PyTorch."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from runners.tests.support import ROOT

try:
    import torch
    TORCH = Path(torch.__file__).parent
except ImportError:  # pragma: no cover - the runner's venv has it
    TORCH = None

TRACKER = "distributed/_tools/mod_tracker.py"
CATALOGUE = f"""
mutants:
  - id: mod_tracker.child_names_slashed
    area: mod_tracker
    file: {TRACKER}
    find: 'self._known_modules[submod] = f"{{mod_name}}.{{name}}"'
    replace: 'self._known_modules[submod] = f"{{mod_name}}/{{name}}"'
    bug: child module names joined with '/' instead of '.'
    world_sizes: [1]
  - id: mod_tracker.same_name_spelled_differently
    area: mod_tracker
    file: {TRACKER}
    find: 'self._known_modules[submod] = f"{{mod_name}}.{{name}}"'
    replace: 'self._known_modules[submod] = mod_name + "." + name'
    bug: none (the same string built another way)
    equivalent: concatenation and the f-string make the same name
    world_sizes: [1]
  - id: mod_tracker.etcd_store_touched
    area: mod_tracker
    file: distributed/elastic/rendezvous/etcd_store.py
    find: 'return self._decode(kvs[b64_key])'
    replace: 'return None'
    bug: a module no adapter imports
    world_sizes: [1]
  - id: mod_tracker.import_broken
    area: mod_tracker
    file: {TRACKER}
    find: 'import weakref'
    replace: 'import ccts_no_such_module'
    bug: none (the module does not import)
    world_sizes: [1]
"""


def mutate(work: Path, catalogue: str, *args: str) -> subprocess.CompletedProcess:
    path = work / "catalogue.yaml"
    path.write_text(catalogue)
    return subprocess.run([sys.executable, "-m", "runners", "mutate", "--catalogue", str(path),
                           "--out", str(work / "out"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT)))


@unittest.skipUnless(TORCH, "the pinned PyTorch is not installed")
class Mutate(unittest.TestCase):
    def setUp(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="ccts-mutate-"))

    def test_a_small_catalogue(self) -> None:
        before = hashlib.sha256((TORCH / TRACKER).read_bytes()).hexdigest()
        done = mutate(self.work, CATALOGUE)
        after = hashlib.sha256((TORCH / TRACKER).read_bytes()).hexdigest()
        self.assertEqual(before, after, "the venv's mod_tracker.py changed")
        table = json.loads((self.work / "out" / "mutate.json").read_text())
        status = {m["id"]: m for m in table["mutants"]}
        self.assertEqual(status["mod_tracker.child_names_slashed"]["status"], "killed", done.stdout)
        self.assertTrue(all(k.startswith("mod_tracker.") for k in status["mod_tracker.child_names_slashed"]["killed_by"]))
        self.assertEqual(status["mod_tracker.same_name_spelled_differently"]["status"], "equivalent", done.stdout)
        self.assertEqual(status["mod_tracker.etcd_store_touched"]["status"], "unexercised", done.stdout)
        self.assertEqual(status["mod_tracker.import_broken"]["status"], "import_error", done.stdout)
        self.assertEqual(table["rates"]["mod_tracker"]["kill_rate"], 1.0)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("| mod_tracker | 4 | 1 | 0 | 1 | 1 | 1 | 100.0% |", (self.work / "out" / "mutate.md").read_text())

    def test_a_text_that_is_not_in_the_file_names_the_mutant_and_field(self) -> None:
        done = mutate(self.work, CATALOGUE.replace("return self._decode(kvs[b64_key])", "no such text"))
        self.assertEqual(done.returncode, 2)
        self.assertIn("mutant mod_tracker.etcd_store_touched: field find: occurs 0 times", done.stderr)

    def test_a_replacement_that_does_not_compile_is_refused(self) -> None:
        done = mutate(self.work, CATALOGUE.replace("replace: 'return None'", "replace: 'return None +'"))
        self.assertEqual(done.returncode, 2)
        self.assertIn("mutant mod_tracker.etcd_store_touched: field replace: the mutated file does not compile",
                      done.stderr)


if __name__ == "__main__":
    unittest.main()
