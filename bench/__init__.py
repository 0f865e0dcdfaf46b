"""fitq's benchmarks: scripts, never tests. Each runs from the repository as
a module (``.venv/bin/python -m bench.engine --help``) and imports what it
shares with the tests from ``tests.support``; nothing edits ``sys.path``."""
