"""What the worker counts as the artifact store's outage (not the job's fault), what
a job's text may say of it (no path, no URL), and the bound: a job the store keeps
failing under fails after ``STORE_FAILURES_MAX`` hand-backs in a row, with the reason."""

from __future__ import annotations

import errno
import os

import pytest

from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from fitq.worker import store_errors
from fitq.worker.runner import Worker
from tests.support.faults import FullStore
from tests.support.rows import job_row, submit
from tests.support.specs import iris_spec


def oserror(code: int, path: str = "/srv/fitq/store/jobs/j/checkpoints/x.part") -> OSError:
    return OSError(code, os.strerror(code), path)


class TestOutage:
    @pytest.mark.parametrize(
        "exc",
        [
            oserror(errno.ENOSPC),
            oserror(errno.EIO),
            oserror(errno.EDQUOT),
            PermissionError(errno.EACCES, "Access Denied"),
            ConnectionResetError(errno.ECONNRESET, "reset"),
            TimeoutError("read timed out"),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_a_full_broken_or_unreachable_store_is_an_outage(self, exc: OSError) -> None:
        assert store_errors.is_outage(exc)

    def test_an_outage_raised_from_inside_another_error_counts(self) -> None:
        try:
            try:
                raise oserror(errno.ENOSPC)
            except OSError as inner:
                raise RuntimeError("saving failed") from inner
        except RuntimeError as outer:
            assert store_errors.is_outage(outer)

    @pytest.mark.parametrize(
        "exc",
        [FileNotFoundError(errno.ENOENT, "gone", "/x"), ValueError("bad"), RuntimeError("nan")],
        ids=lambda e: type(e).__name__,
    )
    def test_a_missing_file_or_a_jobs_own_error_is_not(self, exc: Exception) -> None:
        assert not store_errors.is_outage(exc)


class TestText:
    def test_an_outage_is_described_by_its_name_never_its_path(self) -> None:
        text = store_errors.describe(oserror(errno.ENOSPC))
        assert text == "the artifact store failed: no space left on device (ENOSPC)"

    def test_scrub_removes_the_store_urls_and_absolute_paths(self, tmp_path: object) -> None:
        store = ArtifactStore(f"{tmp_path}/store")
        text = (
            f"[Errno 5] Input/output error: '{store.root}/jobs/a' at s3://fitq-bucket/jobs/b, "
            "/var/lib/x.npy and https://minio:9000/fitq; loss/accuracy 1/2 (at trainer.py:12)"
        )
        scrubbed = store_errors.scrub(text, store)
        assert scrubbed == (
            "[Errno 5] Input/output error: '<store>' at <url>, "
            "<path> and <url>; loss/accuracy 1/2 (at trainer.py:12)"
        )

    def test_an_s3_stores_bucket_is_scrubbed_too(self) -> None:
        store = ArtifactStore("memory://fitq-bucket/prefix")
        assert "fitq-bucket" not in store_errors.scrub("fitq-bucket/prefix/jobs/x: denied", store)


class TestBound:
    def test_a_store_that_keeps_failing_fails_the_job_with_the_reason_and_no_path(
        self, sqlite_url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from tests.worker.conftest import owner_id as _  # noqa: F401  (the fixture's module)

        monkeypatch.setattr(store_errors, "STORE_FAILURES_MAX", 2)
        monkeypatch.setattr(store_errors, "STORE_BACKOFF_FIRST_SECONDS", 0.01)
        settings = Settings(
            home=f"{tmp_path}/home",
            database_url=sqlite_url,
            storage_url=f"file://{tmp_path}/store",
            api_key=None,
            poll_seconds=0.05,
        )
        owner = _owner(sqlite_url)
        job_id = submit(sqlite_url, owner, iris_spec(epochs=2))
        store = FullStore(settings.resolved_storage_url, writes=100)
        assert Worker(settings, store=store).run(max_jobs=2) == 2
        row = job_row(sqlite_url, job_id)
        assert row.status == "failed" and row.error is not None
        assert row.error == (
            "the artifact store failed: no space left on device (ENOSPC) "
            "(2 times in a row; given up)"
        )
        assert store.root not in row.error


def _owner(url: str) -> str:
    from fitq.service import auth
    from fitq.service.db.engine import transaction

    with transaction(url) as session:
        key = auth.create_key(session, "store-owner")
        return auth.authenticate(session, f"Bearer {key}").id
