"""The one error for a file of the suite that cannot be used."""
from __future__ import annotations


class SuiteError(Exception):
    """A file of the suite (case, fixture, rule, schema, the version in CMakeLists.txt) that
    cannot be used; the message names the file and, where it can, the case and the field."""
