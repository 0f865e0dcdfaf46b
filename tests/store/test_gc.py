"""The store's collector (``store/gc.py``): what it takes, what it leaves, its
grace period and its dry run, on a real file store and on S3 (moto)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from fitq.service.db.engine import transaction
from fitq.service.db.models import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Dataset, Job
from fitq.service.db.models import utcnow as db_utcnow
from fitq.service.store import ArtifactStore, gc, keys
from tests.deploy.conftest import S3

SHA = "ab" * 32


def later() -> datetime:
    """A clock two hours ahead: everything stored now is past the default grace."""
    return db_utcnow() + timedelta(hours=2)


def _checkpoint(job_id: str, epoch: int, attempt: int = 1) -> str:
    return keys.checkpoint(job_id, epoch, 0, attempt, SHA)


def _put(store: ArtifactStore, *found: str, size: int = 10) -> None:
    for key in found:
        store.put_bytes(key, b"x" * size)


def _keys(store: ArtifactStore) -> set[str]:
    return {o.key for o in store.objects()}


def _collect(url: str, store: ArtifactStore, **options: object) -> gc.Report:
    return gc.collect(url, store, now=later, **options)  # type: ignore[arg-type]


class TestDatasets:
    def test_files_no_row_names_go_and_named_ones_stay(
        self, database_url: str, store: ArtifactStore, dataset_factory: Callable[..., Dataset]
    ) -> None:
        named = dataset_factory().storage_key
        orphan = keys.dataset("cd" * 32)
        for prefix in (named, orphan):
            _put(store, keys.dataset_x(prefix), keys.dataset_y(prefix), keys.dataset_meta(prefix))
        report = _collect(database_url, store)
        assert [(g.key, g.objects, g.bytes, g.reason) for g in report.items] == [
            (orphan, 3, 30, gc.DATASET)
        ]
        assert _keys(store) == {f"{named}/x.npy", f"{named}/y.npy", f"{named}/meta.json"}


class TestJobs:
    def test_an_ended_jobs_checkpoints_go_and_its_model_stays(
        self, database_url: str, store: ArtifactStore, job_factory: Callable[..., Job]
    ) -> None:
        with_model = job_factory(status=SUCCEEDED, attempt=2).id
        model = keys.model(with_model, 2)
        with transaction(database_url) as session:
            session.execute(update(Job).where(Job.id == with_model).values(model_key=model))
        failed = job_factory(status=FAILED, attempt=1).id
        cancelled = job_factory(status=CANCELLED, attempt=1).id
        stale_model = keys.model(with_model, 1)
        _put(store, model, stale_model, _checkpoint(with_model, 1))
        _put(store, _checkpoint(failed, 1), _checkpoint(failed, 2), _checkpoint(cancelled, 1))
        report = _collect(database_url, store)
        assert {(g.key, g.reason) for g in report.items} == {
            (stale_model, gc.MODEL),
            (_checkpoint(with_model, 1), gc.CHECKPOINT),
            (_checkpoint(failed, 1), gc.CHECKPOINT),
            (_checkpoint(failed, 2), gc.CHECKPOINT),
            (_checkpoint(cancelled, 1), gc.CHECKPOINT),
        }
        assert _keys(store) == {model}
        assert not Path(store.root, keys.checkpoints(failed)).exists()  # no empty folders left

    def test_a_queued_or_running_jobs_files_stay(
        self, database_url: str, store: ArtifactStore, job_factory: Callable[..., Job]
    ) -> None:
        running = job_factory(status=RUNNING, attempt=2).id
        queued = job_factory(status=QUEUED, attempt=1).id  # handed back: resumes from these
        kept = {
            _checkpoint(running, 1, attempt=2),
            keys.model(running, 1),
            _checkpoint(queued, 3),
        }
        _put(store, *kept)
        assert _collect(database_url, store).items == []
        assert _keys(store) == kept

    def test_a_deleted_jobs_files_go(self, database_url: str, store: ArtifactStore) -> None:
        gone = uuid.uuid4().hex
        _put(store, _checkpoint(gone, 1), keys.model(gone, 1))
        report = _collect(database_url, store)
        assert {g.reason for g in report.items} == {gc.DELETED_JOB}
        assert _keys(store) == set()
        assert not Path(store.root, keys.job(gone)).exists()

    def test_a_file_it_does_not_know_stays(
        self, database_url: str, store: ArtifactStore, job_factory: Callable[..., Job]
    ) -> None:
        done = job_factory(status=SUCCEEDED, attempt=1).id
        unknown = {f"{keys.job(done)}/notes.txt", "elsewhere/file.bin", "top-level.bin"}
        _put(store, *unknown)
        assert _collect(database_url, store).items == []
        assert _keys(store) == unknown


def test_an_interrupted_writes_leftovers_go_unless_their_job_runs(
    database_url: str, store: ArtifactStore, job_factory: Callable[..., Job]
) -> None:
    running = job_factory(status=RUNNING, attempt=1).id
    failed = job_factory(status=FAILED, attempt=1).id
    writing = f"{keys.checkpoints(running)}/.tmp-abc123.part"
    leftovers = {
        f"{keys.checkpoints(failed)}/.tmp-abc123.part",
        f"{keys.checkpoints(uuid.uuid4().hex)}/.tmp-abc123.part",
        f"{keys.dataset('cd' * 32)}/.tmp-abc123.part",
    }
    _put(store, writing, *leftovers)
    report = _collect(database_url, store)
    assert {(g.key, g.reason) for g in report.items} == {(k, gc.TEMP) for k in leftovers}
    assert _keys(store) == {writing}


class TestGraceAndDryRun:
    def test_garbage_younger_than_the_grace_period_stays_and_is_counted(
        self, database_url: str, store: ArtifactStore
    ) -> None:
        gone = uuid.uuid4().hex
        _put(store, _checkpoint(gone, 1), keys.model(gone, 1))
        report = gc.collect(database_url, store)  # the real clock, the default hour
        assert (report.items, report.young) == ([], 2)
        assert len(_keys(store)) == 2
        assert gc.collect(database_url, store, grace_seconds=0).objects == 2

    def test_a_dry_run_reports_the_same_and_deletes_nothing(
        self, database_url: str, store: ArtifactStore
    ) -> None:
        gone = uuid.uuid4().hex
        orphan = keys.dataset("cd" * 32)
        _put(store, keys.model(gone, 1), keys.dataset_meta(orphan), size=1000)
        dry = _collect(database_url, store, dry_run=True)
        assert (dry.objects, dry.bytes, dry.dry_run) == (2, 2000, True)
        assert len(_keys(store)) == 2
        real = _collect(database_url, store)
        assert (real.objects, real.bytes, real.items) == (2, 2000, dry.items)
        assert _keys(store) == set()


def test_on_s3(database_url: str, s3: S3, job_factory: Callable[..., Job]) -> None:
    """S3's listing (sizes, LastModified) and deletes: a deleted job's files, an
    ended job's checkpoint, an orphaned dataset prefix."""
    store = s3.store()
    gone = uuid.uuid4().hex
    done = job_factory(status=SUCCEEDED, attempt=1, model_key=None).id
    orphan = keys.dataset("cd" * 32)
    _put(store, keys.model(gone, 1), _checkpoint(gone, 1), _checkpoint(done, 1), size=100)
    _put(store, keys.dataset_x(orphan), keys.dataset_meta(orphan), size=100)
    young = gc.collect(database_url, store)
    assert (young.objects, young.young) == (0, 5)
    report = _collect(database_url, store)
    assert (report.objects, report.bytes) == (5, 500)
    assert _keys(store) == set()
