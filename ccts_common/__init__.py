"""What the runner (runners/), the report writers (reports/) and Python adapters
share: the portable values of spec/values.md, the JSON Schemas of spec/schema/
and the outcome vocabulary of the report schema.

It imports nothing else of the project, so that both packages can use it and
neither has to import the other for it: runners/ uses reports/ (to write the
report formats), never the other way round (runners/tests/test_imports.py).
"""
