"""Canonical files shared by uploads of the same bytes never go from under a row.

An upload that finds its bytes stored writes a row and no files. The collector
and a dataset delete remove a prefix that no row names. Each race is played
deterministically: the store is a real file store that runs the other party
right after the upload read them as stored (``LooksThen``), the
moment the upload used to trust until its commit.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select, text

from fitq.service.datasets import ingest
from fitq.service.datasets import service as datasets
from fitq.service.datasets.limits import NO_LIMITS
from fitq.service.db.engine import transaction
from fitq.service.db.models import Dataset
from fitq.service.store import ArtifactStore, gc, keys
from tests.conftest import Owner
from tests.support.waits import wait_for

CSV = "a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20))


class LooksThen(ArtifactStore):
    """A file store that runs ``then`` once, right after an upload read a
    dataset's ``meta.json`` (its "already stored")."""

    def __init__(self, url: str, then: Callable[[], None]):
        super().__init__(url)
        self._then: Callable[[], None] | None = then

    def get_bytes(self, key: str) -> bytes:
        data = super().get_bytes(key)
        if key.endswith("/meta.json") and self._then is not None:
            then, self._then = self._then, None
            then()
        return data


@pytest.fixture
def csv_upload(tmp_path: Path) -> datasets.NewUpload:
    path = tmp_path / "d.csv"
    path.write_text(CSV)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return datasets.NewUpload(path=path, filename="d.csv", sha256=digest, size_bytes=len(CSV))


def _upload(url: str, store: ArtifactStore, owner_id: str, upload: datasets.NewUpload) -> str:
    with transaction(url) as session:
        return datasets.create(session, store, owner_id, upload, limits=NO_LIMITS).id


def _readable(url: str, store: ArtifactStore, dataset_id: str) -> bool:
    """Whether the row exists and its canonical arrays load."""
    with transaction(url) as session:
        row = session.get(Dataset, dataset_id)
        assert row is not None
        prefix = row.storage_key
    if not ingest.is_saved(store, prefix):
        return False
    x, y = ingest.load_canonical(store, prefix)
    return x.shape == (20, 2) and np.asarray(y).shape == (20,)


class TestAnUploadThatFoundItsBytesStored:
    def test_keeps_them_when_the_collector_runs_before_its_row_commits(
        self,
        database_url: str,
        store: ArtifactStore,
        make_owner: Callable[..., Owner],
        csv_upload: datasets.NewUpload,
    ) -> None:
        first = _upload(database_url, store, make_owner().id, csv_upload)
        with transaction(database_url) as session:  # the row went, its files stayed (a crash)
            session.execute(delete(Dataset).where(Dataset.id == first))

        def collector() -> None:
            gc.collect(database_url, store, grace_seconds=0)

        racing = LooksThen(store.url, collector)
        second = _upload(database_url, racing, make_owner().id, csv_upload)
        assert _readable(database_url, store, second)

    def test_keeps_them_when_the_last_other_row_is_deleted_meanwhile(
        self,
        database_url: str,
        store: ArtifactStore,
        make_owner: Callable[..., Owner],
        csv_upload: datasets.NewUpload,
    ) -> None:
        first_owner = make_owner()
        first = _upload(database_url, store, first_owner.id, csv_upload)

        def delete_first() -> None:
            with transaction(database_url) as session:
                row = datasets.get(session, first_owner.id, first)
                datasets.delete_dataset(session, store, row)

        racing = LooksThen(store.url, delete_first)
        second = _upload(database_url, racing, make_owner().id, csv_upload)
        assert _readable(database_url, store, second)

    def test_a_delete_after_the_last_row_went_still_removes_the_files(
        self,
        database_url: str,
        store: ArtifactStore,
        owner: Owner,
        csv_upload: datasets.NewUpload,
    ) -> None:
        dataset_id = _upload(database_url, store, owner.id, csv_upload)
        with transaction(database_url) as session:
            datasets.delete_dataset(session, store, datasets.get(session, owner.id, dataset_id))
        assert store.objects(keys.DATASETS) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_collector_waits_for_an_upload_that_holds_the_prefix(
    database_url: str,
    store: ArtifactStore,
    make_owner: Callable[..., Owner],
    csv_upload: datasets.NewUpload,
) -> None:
    """The upload holds the prefix from its look to its commit; a collector that
    comes meanwhile waits, then finds the row and keeps the files. (PostgreSQL:
    the wait is seen in ``pg_locks``; SQLite's writers queue on its one lock,
    where a waiter cannot be seen: the upload-versus-collector race above covers it.)"""
    first = _upload(database_url, store, make_owner().id, csv_upload)
    with transaction(database_url) as session:
        session.execute(delete(Dataset).where(Dataset.id == first))
    reports: list[gc.Report] = []
    collector = threading.Thread(
        target=lambda: reports.append(gc.collect(database_url, store, grace_seconds=0))
    )
    second_owner = make_owner().id
    with transaction(database_url) as session:
        second = datasets.create(session, store, second_owner, csv_upload, limits=NO_LIMITS).id
        collector.start()
        wait_for(lambda: _waiting_for_an_advisory_lock(database_url), "the collector to wait")
    collector.join(timeout=60)
    assert reports and reports[0].objects == 0
    assert _readable(database_url, store, second)


def _waiting_for_an_advisory_lock(url: str) -> bool:
    with transaction(url) as session:
        return bool(
            session.scalar(
                select(text("count(*)"))
                .select_from(text("pg_locks"))
                .where(text("locktype = 'advisory' AND NOT granted"))
            )
        )
