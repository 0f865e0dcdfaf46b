"""Jobs written straight into the queue's table, claimed and read back (the queue
tests' own rows: no submission path, no spec beyond a dataset)."""

from __future__ import annotations

from datetime import timedelta

from fitq.service import queue
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import Job, utcnow

LEASE = 30.0
SPEC = {"dataset_id": "iris"}


def add_jobs(url: str, owner_id: str, priorities: list[int], **fields: object) -> list[str]:
    """Queued jobs with strictly increasing created_at, in the given order."""
    base = utcnow() - timedelta(hours=1)
    ids = []
    with transaction(url) as session:
        for i, priority in enumerate(priorities):
            job = Job(
                owner_id=owner_id,
                spec=SPEC,
                dataset_id="iris",
                epochs=1,
                priority=priority,
                created_at=base + timedelta(milliseconds=i),
                **fields,
            )
            session.add(job)
            session.flush()
            ids.append(job.id)
    return ids


def claim(url: str, worker: str = "w1", lease: float = LEASE, **kw: object) -> queue.Claim | None:
    with transaction(url) as session:
        return queue.claim(session, worker, lease, **kw)  # type: ignore[arg-type]


def get(url: str, job_id: str) -> Job:
    with session_factory(url)() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job
