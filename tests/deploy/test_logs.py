"""FITQ_LOG_FORMAT=json: one JSON object per line, for fitq's loggers and
uvicorn's alike, with the structured fields as keys (the processes' own logs
are checked in test_multi_machine and test_image_entrypoints)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from fitq.service import logs


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    names = (*logs.LOGGERS, "uvicorn.error", logs.ACCESS_LOGGER)
    saved = {
        n: (
            logging.getLogger(n).handlers[:],
            logging.getLogger(n).level,
            logging.getLogger(n).propagate,
        )
        for n in names
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


class TestJson:
    def test_worker_fields(self, capsys: pytest.CaptureFixture[str]) -> None:
        logs.configure("json")
        logging.getLogger("fitq.worker").info(
            "job started", extra={"action": "start", "job_id": "j1", "attempt": 2, "worker_id": "w"}
        )
        (record,) = lines(capsys.readouterr().err)
        assert record["msg"] == "job started" and record["logger"] == "fitq.worker"
        assert (record["job_id"], record["attempt"], record["worker_id"]) == ("j1", 2, "w")

    def test_uvicorn_access_and_error_logs(self, capsys: pytest.CaptureFixture[str]) -> None:
        logs.configure("json")
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
        logging.getLogger(logs.ACCESS_LOGGER).info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/v1/jobs/x", "1.1", 404
        )
        started, access = lines(capsys.readouterr().err)
        assert started["msg"] == "Started server process [7]"
        assert access["logger"] == "uvicorn.access"
        assert (access["method"], access["path"], access["status"]) == ("GET", "/v1/jobs/x", 404)
        assert access["client"] == "127.0.0.1:5000"

    def test_exceptions_stay_on_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        logs.configure("json")
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("fitq.api").exception("internal error")
        (record,) = lines(capsys.readouterr().err)
        assert "ValueError: bad" in str(record["exc"])


class TestText:
    def test_fields_follow_the_message(self, capsys: pytest.CaptureFixture[str]) -> None:
        logs.configure("text")
        logging.getLogger("fitq.worker").info("epoch", extra={"job_id": "j1", "epoch": 3})
        assert capsys.readouterr().err.rstrip().endswith("epoch job_id=j1 epoch=3")
