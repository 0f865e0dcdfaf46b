"""Logging set-up: plain text for people, JSON lines for machines
(``FITQ_LOG_FORMAT=json``). Structured fields travel in ``extra=``
(``action``, ``job_id``, ``attempt``, ``epoch``, ``worker_id``).

``configure`` owns fitq's loggers and uvicorn's (``uvicorn.error``, and
``uvicorn.access`` whose records become ``method``, ``path``, ``status``,
``client`` fields), so one process writes one format. Uvicorn must then be
started with ``log_config=None`` so it does not install its own handlers.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

FIELDS = (
    "action",
    "job_id",
    "attempt",
    "epoch",
    "step",
    "worker_id",
    "pack_id",
    "pack_size",
    "device",
    "dataset_id",
    "method",
    "path",
    "status",
    "client",
    "error",
)
LOGGERS = ("fitq", "uvicorn")
"""The loggers ``configure`` owns (their children included)."""
ACCESS_LOGGER = "uvicorn.access"


def _access_fields(record: logging.LogRecord) -> None:
    """Uvicorn's access line carries (client, method, path, http version, status)
    as format arguments; copy them onto the record as fields."""
    if record.name != ACCESS_LOGGER or hasattr(record, "status"):
        return
    args = record.args
    if isinstance(args, tuple) and len(args) == 5:
        client, method, path, _version, status = args
        record.client, record.method, record.path, record.status = client, method, path, status


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        _access_fields(record)
        body: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update({f: getattr(record, f) for f in FIELDS if hasattr(record, f)})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.name == ACCESS_LOGGER:  # the message already says it all
            return line
        fields = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if hasattr(record, f))
        return f"{line} {fields}" if fields else line


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    for child in ("uvicorn.error", ACCESS_LOGGER):  # uvicorn's own set-up may have left handlers
        logging.getLogger(child).handlers[:] = []
        logging.getLogger(child).propagate = True
