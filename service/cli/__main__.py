"""``python -m fitq.service.cli``: the ``fitq`` command."""

from fitq.service.cli import app

app(prog_name="fitq")
