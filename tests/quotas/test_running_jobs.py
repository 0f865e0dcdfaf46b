"""FITQ_MAX_RUNNING_JOBS_PER_KEY: a key at its limit has its queued jobs skipped
by the claim (``queue.within_running_quota``), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from fitq.service import queue
from fitq.service.db.engine import transaction
from fitq.service.db.models import Job, utcnow
from fitq.service.settings import Settings
from fitq.worker.runner import Worker
from tests.conftest import Owner
from tests.queue.helpers import add_jobs, claim, get

LIMIT = 2


class TestClaim:
    def test_a_key_at_its_limit_is_skipped_and_others_go_first(
        self, database_url: str, make_owner: Callable[..., Owner]
    ) -> None:
        busy, other = make_owner("busy").id, make_owner("other").id
        first, second, third = add_jobs(database_url, busy, [5, 5, 5])
        [theirs] = add_jobs(database_url, other, [0])
        taken = [claim(database_url, max_running_per_key=LIMIT) for _ in range(4)]
        assert [c.job_id if c else None for c in taken] == [first, second, theirs, None]
        assert get(database_url, third).status == "queued"

        with transaction(database_url) as session:  # one of the key's jobs ends
            queue.finish(session, first, 1, model_key="m", test_metrics=None)
        again = claim(database_url, max_running_per_key=LIMIT)
        assert again is not None and again.job_id == third

    def test_a_rescue_is_not_held_back(
        self, database_url: str, make_owner: Callable[..., Owner]
    ) -> None:
        owner = make_owner("busy").id
        lost, running, waiting = add_jobs(database_url, owner, [9, 8, 7])
        assert claim(database_url, max_running_per_key=LIMIT).job_id == lost  # type: ignore[union-attr]
        assert claim(database_url, max_running_per_key=LIMIT).job_id == running  # type: ignore[union-attr]
        with transaction(database_url) as session:  # the first worker died
            session.execute(
                update(Job)
                .where(Job.id == lost)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        rescued = claim(database_url, "w2", max_running_per_key=LIMIT)
        assert rescued is not None and (rescued.job_id, rescued.attempt) == (lost, 2)
        assert claim(database_url, max_running_per_key=LIMIT) is None
        assert get(database_url, waiting).status == "queued"

    def test_no_limit_claims_everything(
        self, database_url: str, make_owner: Callable[..., Owner]
    ) -> None:
        ids = add_jobs(database_url, make_owner("busy").id, [0, 0, 0])
        assert [claim(database_url).job_id for _ in ids] == ids  # type: ignore[union-attr]

    def test_a_pack_claim_skips_a_key_at_its_limit(
        self, database_url: str, make_owner: Callable[..., Owner]
    ) -> None:
        busy, other = make_owner("busy").id, make_owner("other").id
        add_jobs(database_url, busy, [9, 9])
        assert claim(database_url, max_running_per_key=LIMIT) is not None
        assert claim(database_url, max_running_per_key=LIMIT) is not None
        packed_busy = add_jobs(database_url, busy, [5, 5], pack_key="k")
        packed_other = add_jobs(database_url, other, [0], pack_key="k")
        with transaction(database_url) as session:
            claims = queue.claim_compatible(
                session, "w2", 30.0, pack_key="k", limit=4, pack_id="p", max_running_per_key=LIMIT
            )
        assert [c.job_id for c in claims] == packed_other
        assert {get(database_url, i).status for i in packed_busy} == {"queued"}

    def test_a_pack_claim_takes_a_key_only_up_to_its_limit(
        self, database_url: str, make_owner: Callable[..., Owner]
    ) -> None:
        busy, other = make_owner("busy").id, make_owner("other").id
        [running] = add_jobs(database_url, busy, [9])
        assert claim(database_url, max_running_per_key=LIMIT).job_id == running  # type: ignore[union-attr]
        first, second, third = add_jobs(database_url, busy, [5, 5, 5], pack_key="k")
        [theirs] = add_jobs(database_url, other, [0], pack_key="k")
        with transaction(database_url) as session:
            claims = queue.claim_compatible(
                session, "w2", 30.0, pack_key="k", limit=4, pack_id="p", max_running_per_key=LIMIT
            )
        assert [c.job_id for c in claims] == [first, theirs]  # busy: 1 running + 1 = LIMIT
        assert {get(database_url, i).status for i in (second, third)} == {"queued"}


def test_the_worker_claims_with_the_setting(
    database_url: str, make_owner: Callable[..., Owner], settings: Settings
) -> None:
    owner = make_owner("busy").id
    running, waiting = add_jobs(database_url, owner, [1, 0])
    worker = Worker(settings.model_copy(update={"max_running_jobs_per_key": 1}), worker_id="w")
    claimed = worker.claim()
    assert claimed is not None and claimed.job_id == running
    assert worker.claim() is None
    assert get(database_url, waiting).status == "queued"
