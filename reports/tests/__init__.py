"""Self-tests of the report writers (python3 -m unittest discover -s reports/tests -t .)."""
