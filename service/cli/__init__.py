"""The ``fitq`` command (``pyproject.toml``'s entry point ``fitq.service.cli:app``;
``python -m fitq.service.cli`` runs it too). See ``app.py``."""

from fitq.service.cli.app import app

__all__ = ["app"]
