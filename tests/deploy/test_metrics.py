"""The workers' side of /metrics, read from the database at scrape time: job
counters, epoch durations, heartbeats of the workers with a running job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fitq.service.db.engine import transaction
from fitq.service.db.models import Job, JobEpoch, utcnow
from fitq.service.settings import Settings

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def scrape(client: httpx.AsyncClient) -> dict:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return samples(response.text)


class TestJobCounters:
    async def test_started_attempts_and_finished_by_status(
        self, client: httpx.AsyncClient, job_factory: Callable[..., Job]
    ) -> None:
        now = utcnow()
        job_factory()  # queued, never claimed
        job_factory(status="running", attempt=2, started_at=now)
        job_factory(status="succeeded", attempt=1, started_at=now, finished_at=now)
        job_factory(status="failed", attempt=3, started_at=now, finished_at=now)
        job_factory(status="cancelled", finished_at=now)  # cancelled while queued
        found = await scrape(client)
        assert value(found, "fitq_jobs_started_total") == 3
        assert value(found, "fitq_job_attempts_total") == 6
        assert value(found, "fitq_jobs_finished_total", status="succeeded") == 1
        assert value(found, "fitq_jobs_finished_total", status="failed") == 1
        assert value(found, "fitq_jobs_finished_total", status="cancelled") == 1
        assert value(found, "fitq_jobs", status="queued") == 1

    async def test_an_empty_database_reports_zeros(self, client: httpx.AsyncClient) -> None:
        found = await scrape(client)
        assert value(found, "fitq_jobs_started_total") == 0
        assert value(found, "fitq_jobs_finished_total", status="failed") == 0
        assert value(found, "fitq_epoch_duration_seconds_count") == 0
        assert value(found, "fitq_workers_busy") == 0


class TestEpochDurations:
    async def test_histogram_of_recorded_epochs(
        self, client: httpx.AsyncClient, database_url: str, job_factory: Callable[..., Job]
    ) -> None:
        job = job_factory(status="running", attempt=1)
        with transaction(database_url) as session:
            for epoch, seconds in enumerate((0.05, 0.3, 2.0, 7000.0), start=1):
                session.add(
                    JobEpoch(
                        job_id=job.id,
                        epoch=epoch,
                        attempt=1,
                        metrics={"loss": 1.0},
                        seconds=seconds,
                        samples_per_second=1.0,
                    )
                )
        found = await scrape(client)
        bucket = "fitq_epoch_duration_seconds_bucket"
        assert value(found, bucket, le="0.1") == 1
        assert value(found, bucket, le="0.5") == 2
        assert value(found, bucket, le="2.5") == 3
        assert value(found, bucket, le="3600.0") == 3
        assert value(found, bucket, le="+Inf") == 4
        assert value(found, "fitq_epoch_duration_seconds_count") == 4
        assert value(found, "fitq_epoch_duration_seconds_sum") == pytest.approx(7002.35)


class TestWorkerHeartbeats:
    async def test_age_and_lease_of_each_worker_with_a_running_job(
        self, client: httpx.AsyncClient, settings: Settings, job_factory: Callable[..., Job]
    ) -> None:
        lease = settings.lease_seconds
        now = utcnow()
        job_factory(
            status="running",
            worker_id="gpu-box-1",
            device="cuda:1",
            lease_expires_at=now + timedelta(seconds=lease - 5),  # beat ~5 s ago
        )
        job_factory(
            status="running",
            worker_id="gone-box",
            device="cpu",
            lease_expires_at=now - timedelta(seconds=10),  # lost: lease ran out
        )
        found = await scrape(client)
        age = value(
            found, "fitq_worker_heartbeat_age_seconds", worker_id="gpu-box-1", device="cuda:1"
        )
        assert 5 <= age < 5 + 30, "about five seconds (plus the time the scrape took)"
        left = value(
            found, "fitq_worker_lease_remaining_seconds", worker_id="gone-box", device="cpu"
        )
        assert left <= -10
        assert (
            value(found, "fitq_worker_heartbeat_age_seconds", worker_id="gone-box", device="cpu")
            >= lease + 10
        )
        assert value(found, "fitq_workers_busy") == 1

    async def test_idle_and_finished_jobs_have_no_series(
        self, client: httpx.AsyncClient, job_factory: Callable[..., Job]
    ) -> None:
        job_factory(status="succeeded", worker_id="w-done", device="cpu", finished_at=utcnow())
        text = (await client.get("/metrics")).text
        assert "w-done" not in text
