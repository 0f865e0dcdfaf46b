"""How long a job may run: the spec's ``max_seconds``, at most the service's
``FITQ_MAX_JOB_SECONDS``, counted from the job's first start (``started_at``,
which a resumed attempt keeps), so a job retried after a lost worker does not
get its time again. The worker checks it at each step boundary and fails the
job past it (``worker/attempt.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fitq.service.db.models import Job
from fitq.service.settings import Settings


class OverTime(Exception):
    """The job ran past its run time; it fails with this message."""


@dataclass(frozen=True)
class RunTime:
    deadline: float  # wall clock (time.time()) when the job's time is up
    limit: int  # seconds
    setting: str  # what set the limit: the spec's max_seconds or FITQ_MAX_JOB_SECONDS

    @classmethod
    def of(
        cls, sessions: Callable[[], Session], job_id: str, spec: dict[str, Any], settings: Settings
    ) -> RunTime:
        """The run time of ``job_id`` (its ``started_at`` read from its row)."""
        limit, setting = settings.max_job_seconds, "FITQ_MAX_JOB_SECONDS"
        asked = spec.get("max_seconds")
        if asked is not None and int(asked) < limit:
            limit, setting = int(asked), "max_seconds"
        with sessions() as session:
            started = session.scalar(select(Job.started_at).where(Job.id == job_id))
        start = started.timestamp() if started is not None else time.time()
        return cls(deadline=start + limit, limit=limit, setting=setting)

    def check(self, epoch: int, step: int) -> None:
        """Raise ``OverTime`` once the deadline has passed."""
        if time.time() > self.deadline:
            raise OverTime(
                f"the job ran past its run time of {self.limit} s ({self.setting}), counted "
                f"from its first start; stopped at epoch {epoch}, step {step}"
            )
