"""The queue's part in packing, on a real database (SQLite and PostgreSQL): a pack's
jobs claimed in one statement, each with its own attempt; the pack's size written for
its members; one heartbeat statement for all of them; a handed-back job in no pack."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from fitq.service import queue
from fitq.service.db.engine import session_factory, transaction
from fitq.service.db.models import EVENT_STATUS, RUNNING, Job, JobEvent, utcnow
from tests.queue.helpers import LEASE, add_jobs, claim, get

KEY, OTHER = "k" * 32, "o" * 32


def claim_pack(
    url: str, limit: int, *, key: str = KEY, pack_id: str = "p1", worker: str = "w1", **kw: object
) -> list[queue.Claim]:
    with transaction(url) as session:
        return queue.claim_compatible(
            session, worker, LEASE, pack_key=key, limit=limit, pack_id=pack_id, **kw
        )  # type: ignore[arg-type]


def status_events(url: str, job_id: str) -> list[dict[str, object]]:
    with session_factory(url)() as session:
        rows = session.scalars(
            select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.kind == EVENT_STATUS)
        )
        return list(rows)


class TestClaimCompatible:
    def test_takes_up_to_the_limit_of_its_key_highest_priority_then_oldest(
        self, database_url: str, owner: str
    ) -> None:
        ids = add_jobs(database_url, owner, [0, 5, 0, 5], pack_key=KEY)
        [other] = add_jobs(database_url, owner, [9], pack_key=OTHER)
        [solo] = add_jobs(database_url, owner, [9])
        got = claim_pack(database_url, 3, device="cpu")
        assert [c.job_id for c in got] == [ids[1], ids[3], ids[0]]
        assert {c.pack_key for c in got} == {KEY}
        for c in got:
            job = get(database_url, c.job_id)
            assert (job.status, job.attempt, job.worker_id, job.device) == (RUNNING, 1, "w1", "cpu")
            assert (job.pack_id, c.attempt) == ("p1", 1)
            assert job.lease_expires_at is not None and job.started_at is not None
            assert status_events(database_url, c.job_id)[-1] == {"status": RUNNING, "attempt": 1}
        for untouched in (ids[2], other, solo):
            assert get(database_url, untouched).status == "queued"
        assert [c.job_id for c in claim_pack(database_url, 3)] == [ids[2]]

    def test_rescues_an_expired_member_with_its_next_attempt(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0], pack_key=KEY)
        with transaction(database_url) as session:
            first = queue.claim_compatible(session, "w1", 1, pack_key=KEY, limit=1, pack_id="p1")
        assert [c.attempt for c in first] == [1]
        assert claim_pack(database_url, 1, pack_id="p2") == []  # its lease is live
        later = utcnow() + timedelta(seconds=5)
        [again] = claim_pack(database_url, 1, pack_id="p2", worker="w2", now=later)
        assert (again.job_id, again.attempt) == (job_id, 2)
        assert (get(database_url, job_id).pack_id, get(database_url, job_id).worker_id) == (
            "p2",
            "w2",
        )

    def test_a_retry_on_its_last_attempt_is_left_to_train_alone(
        self, database_url: str, owner: str
    ) -> None:
        fresh, retried, last = add_jobs(database_url, owner, [0, 0, 0], pack_key=KEY)
        with transaction(database_url) as session:  # attempts spent by lost workers
            session.get(Job, retried).attempt = 1  # type: ignore[union-attr]
            session.get(Job, last).attempt = 2  # type: ignore[union-attr]
        assert [c.job_id for c in claim_pack(database_url, 3)] == [fresh, retried]
        alone = claim(database_url)
        assert alone is not None and (alone.job_id, alone.attempt) == (last, 3)
        assert alone.isolated and alone.pack_key == KEY

    def test_a_job_allowed_one_attempt_packs(self, database_url: str, owner: str) -> None:
        [job_id] = add_jobs(database_url, owner, [0], pack_key=KEY, max_attempts=1)
        [got] = claim_pack(database_url, 1)
        assert (got.job_id, got.isolated) == (job_id, False)

    def test_a_limit_below_one_claims_nothing(self, database_url: str, owner: str) -> None:
        add_jobs(database_url, owner, [0], pack_key=KEY)
        assert claim_pack(database_url, 0) == []

    def test_concurrent_packs_never_take_the_same_job(self, database_url: str, owner: str) -> None:
        ids = add_jobs(database_url, owner, [0] * 120, pack_key=KEY)
        taken: list[str] = []
        lock = threading.Lock()

        def packer(name: str) -> None:
            while got := claim_pack(database_url, 7, pack_id=name, worker=name):
                with lock:
                    taken.extend(c.job_id for c in got)

        threads = [threading.Thread(target=packer, args=(f"w{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(taken) == sorted(ids)
        assert {get(database_url, i).attempt for i in ids} == {1}


class TestSoloClaim:
    def test_returns_the_key_and_puts_the_job_in_no_pack(
        self, database_url: str, owner: str
    ) -> None:
        [job_id] = add_jobs(database_url, owner, [0], pack_key=KEY, pack_id="old", pack_size=4)
        got = claim(database_url)
        assert got is not None and got.pack_key == KEY
        job = get(database_url, job_id)
        assert (job.pack_id, job.pack_size) == (None, None)


class TestPackSize:
    def test_written_for_the_running_attempts_named(self, database_url: str, owner: str) -> None:
        add_jobs(database_url, owner, [0, 0, 0], pack_key=KEY)
        first, second, third = claim_pack(database_url, 3)
        stale = queue.Claim(third.job_id, third.attempt + 1, {}, None, KEY)
        with transaction(database_url) as session:
            written = queue.set_pack_size(session, "p9", 3, [first, second, stale])
        assert written == {first.job_id, second.job_id}
        assert (
            get(database_url, first.job_id).pack_id,
            get(database_url, first.job_id).pack_size,
        ) == (
            "p9",
            3,
        )
        assert get(database_url, third.job_id).pack_size is None

    def test_a_member_that_ended_keeps_the_size_it_trained_in(
        self, database_url: str, owner: str
    ) -> None:
        add_jobs(database_url, owner, [0, 0], pack_key=KEY)
        done, going = claim_pack(database_url, 2)
        with transaction(database_url) as session:
            queue.set_pack_size(session, "p1", 2, [done, going])
            queue.finish(session, done.job_id, done.attempt, model_key="m", test_metrics=None)
            queue.set_pack_size(session, "p1", 1, [going])
        assert get(database_url, done.job_id).pack_size == 2
        assert get(database_url, going.job_id).pack_size == 1


class TestHeartbeatClaims:
    def test_one_statement_extends_each_lease_writes_moved_progress_and_hears_cancels(
        self, database_url: str, owner: str
    ) -> None:
        add_jobs(database_url, owner, [0, 0, 0], pack_key=KEY)
        a, b, c = claim_pack(database_url, 3)
        with transaction(database_url) as session:
            queue.record_progress(session, b.job_id, b.attempt, epoch=2, step=7, steps=9)
            queue.request_cancel(session, c.job_id)
        stale = queue.Claim(a.job_id, a.attempt + 1, {}, None, KEY)
        later = utcnow() + timedelta(minutes=5)
        beats = [queue.Beat(a, (1, 3, 10)), queue.Beat(b), queue.Beat(c, (1, 1, 10))]
        with transaction(database_url) as session:
            heard = queue.heartbeat_claims(session, [*beats, queue.Beat(stale)], LEASE, now=later)
        assert heard == {a.job_id: False, b.job_id: False, c.job_id: True}
        rows = {j.job_id: get(database_url, j.job_id) for j in (a, b, c)}
        assert [(r.epoch, r.step, r.steps) for r in rows.values()] == [
            (1, 3, 10),
            (2, 7, 9),
            (1, 1, 10),
        ]
        for row in rows.values():
            assert row.lease_expires_at == later + timedelta(seconds=LEASE)

    def test_an_ended_or_superseded_attempt_is_not_in_the_answer(
        self, database_url: str, owner: str
    ) -> None:
        add_jobs(database_url, owner, [0, 0], pack_key=KEY)
        ended, going = claim_pack(database_url, 2)
        with transaction(database_url) as session:
            queue.fail(session, ended.job_id, ended.attempt, "boom")
        with transaction(database_url) as session:
            heard = queue.heartbeat_claims(session, [queue.Beat(ended), queue.Beat(going)], LEASE)
        assert heard == {going.job_id: False}


class TestHandBack:
    @pytest.mark.parametrize("solo", [False, True])
    def test_a_requeued_member_is_in_no_pack_and_solo_unkeys_it(
        self, database_url: str, owner: str, solo: bool
    ) -> None:
        add_jobs(database_url, owner, [0], pack_key=KEY)
        [got] = claim_pack(database_url, 1)
        with transaction(database_url) as session:
            queue.set_pack_size(session, "p1", 1, [got])
            queue.requeue(session, got.job_id, got.attempt, solo=solo)
        job = get(database_url, got.job_id)
        assert (job.status, job.pack_id, job.pack_size) == ("queued", None, None)
        assert job.pack_key == (None if solo else KEY)
        assert (claim_pack(database_url, 1) == []) is solo
