"""Logging set-up: plain text for people, JSON lines for machines
(``FITQ_LOG_FORMAT=json``). Structured fields travel in ``extra=``
(``action``, ``job_id``, ``attempt``, ``epoch``, ``worker_id``)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

FIELDS = ("action", "job_id", "attempt", "epoch", "step", "worker_id", "device", "error")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update({f: getattr(record, f) for f in FIELDS if hasattr(record, f)})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if hasattr(record, f))
        return f"{line} {fields}" if fields else line


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("fitq")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
