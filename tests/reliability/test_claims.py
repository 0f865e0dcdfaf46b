"""The claim under contention: 1,000 queued jobs, 16 concurrent claimers. Each
job is claimed exactly once, none is left, and the order is priority, then
age: one claimer alone takes them in exactly that order, and each of the
concurrent claimers takes its share in that order too."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

from sqlalchemy import func, select

from fitq.service import queue
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import Job, utcnow
from tests.reliability.harness import record, summary

N_JOBS, N_CLAIMERS = 1000, 16
N_ORDERED = 200
"""Jobs the lone claimer takes (its order is checked for all 1,000 below too)."""
LEASE = 60.0


def add_jobs(url: str, owner_id: str, seed: int, n: int = N_JOBS) -> list[str]:
    """``n`` queued jobs of random priority (0–4) and distinct ages, returned
    in the order the queue must hand them out."""
    rng = random.Random(seed)
    base = utcnow() - timedelta(hours=1)
    rows = [
        {
            "owner_id": owner_id,
            "spec": {"dataset_id": "iris"},
            "dataset_id": "iris",
            "epochs": 1,
            "priority": rng.randrange(5),
            "created_at": base + timedelta(milliseconds=rng.randrange(10**7)),
        }
        for _ in range(n)
    ]
    with transaction(url) as session:
        jobs = [Job(**row) for row in rows]
        session.add_all(jobs)
        session.flush()
        ordered = sorted(jobs, key=lambda j: (-j.priority, j.created_at, j.id))
        return [j.id for j in ordered]


def claim(url: str, worker: str) -> str | None:
    with transaction(url) as session:
        got = queue.claim(session, worker, LEASE)
        return got.job_id if got else None


def queued(url: str) -> int:
    with session_factory(url)() as session:
        return int(session.scalar(select(func.count()).where(Job.status == "queued")) or 0)


class TestClaimOrder:
    def test_one_claimer_takes_them_by_priority_then_age(
        self, database_url: str, owner_id: str
    ) -> None:
        expected = add_jobs(database_url, owner_id, seed=1, n=N_ORDERED)
        taken = []
        while (job_id := claim(database_url, "solo")) is not None:
            taken.append(job_id)
        assert taken == expected


class TestConcurrentClaims:
    def test_sixteen_claimers_take_each_of_1000_jobs_exactly_once_in_order(
        self, database_url: str, backend: str, owner_id: str
    ) -> None:
        expected = add_jobs(database_url, owner_id, seed=2)
        rank = {job_id: i for i, job_id in enumerate(expected)}
        taken: dict[str, list[str]] = {f"w{i}": [] for i in range(N_CLAIMERS)}
        latencies: list[float] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(N_CLAIMERS)

        def claimer(name: str) -> None:
            try:
                start.wait()
                while True:
                    began = time.perf_counter()
                    job_id = claim(database_url, name)
                    if job_id is None:
                        return
                    with lock:
                        latencies.append(time.perf_counter() - began)
                    taken[name].append(job_id)
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        began = time.monotonic()
        threads = [threading.Thread(target=claimer, args=(name,)) for name in taken]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began

        assert not errors, errors
        everything = [job_id for share in taken.values() for job_id in share]
        assert sorted(everything) == sorted(expected), "a job was lost or claimed twice"
        assert queued(database_url) == 0
        for name, share in taken.items():
            ranks = [rank[job_id] for job_id in share]
            assert ranks == sorted(ranks), f"{name} took a job out of priority/age order"
        record(
            "1,000 jobs, 16 claimers",
            backend,
            jobs=N_JOBS,
            workers=N_CLAIMERS,
            kills=0,
            lost=0,
            duplicated_epochs=0,
            claimed_twice=0,
            claim=summary(latencies),
            claims_per_second=round(N_JOBS / elapsed),
        )
