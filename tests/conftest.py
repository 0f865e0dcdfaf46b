"""Shared fixtures: real databases (SQLite and PostgreSQL), a real file store,
real API keys, the API app and a client, and row factories.

Databases. ``database_url`` is parametrised over ``sqlite`` and ``postgres``:
each backend's database is created and migrated once per test session
(PostgreSQL: a fresh ``fitq_test_<random>`` database made from
``FITQ_TEST_POSTGRES_URL``, dropped at the end) and every table is emptied
before each test (``TRUNCATE … CASCADE`` / ``DELETE``). PostgreSQL unreachable:
the postgres tests fail when ``CI`` is set, and are skipped otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import delete

from fitq.service import auth
from fitq.service.db import migrate
from fitq.service.db.engine import engine_for, transaction
from fitq.service.db.models import RUNNING, Base, Dataset, Job, utcnow
from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from tests.databases import fresh_postgres_database, postgres_unreachable
from tests.support.specs import spec_factory

# pytest-xdist's workers inherit COLUMNS=80 from execnet; the CLI's rich consoles
# (made at import) would keep that width for every command, ignoring the COLUMNS a
# test gives its command. Without it they measure each command as a serial run does.
os.environ.pop("COLUMNS", None)

SPEC = spec_factory()
"""A small valid spec for the ``iris`` built-in (raw, as a client sends it)."""


# -- databases ------------------------------------------------------------------


def _empty_tables(url: str) -> None:
    """Empty every table, children first. ``DELETE`` rather than ``TRUNCATE`` on
    PostgreSQL too: for tables of a few rows it is several times faster
    (TRUNCATE swaps each table's files), and the isolation is the same."""
    with engine_for(url).begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, migrated to head; dropped at the end."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(fresh_postgres_database(prefix="fitq_test"))
        except psycopg.OperationalError as exc:
            postgres_unreachable(exc)
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def _sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SQLite file for this session, migrated to head."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'fitq.db'}"
    migrate.upgrade(url)
    yield url
    engine_for(url).dispose()


@pytest.fixture
def postgres_url(_postgres_database: str) -> str:
    """The session's PostgreSQL database (schema at head), emptied for this test."""
    _empty_tables(_postgres_database)
    return _postgres_database


@pytest.fixture
def sqlite_url(_sqlite_database: str) -> str:
    """The session's SQLite database (schema at head), emptied for this test."""
    _empty_tables(_sqlite_database)
    return _sqlite_database


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database at head: the test runs once on SQLite, once on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


# -- settings, store, keys -------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings over ``database_url`` and a file store under ``tmp_path/store``."""
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        storage_url=(tmp_path / "store").as_uri(),
        api_key=None,
    )


@pytest.fixture
def store(settings: Settings) -> ArtifactStore:
    """The artifact store of ``settings``."""
    return ArtifactStore(settings.resolved_storage_url)


@pytest.fixture
def make_key(database_url: str) -> Callable[..., str]:
    """``make_key(name=None) -> key``: a real API key registered in the database."""

    def _make_key(name: str | None = None) -> str:
        with transaction(database_url) as session:
            return auth.create_key(session, name or f"key-{uuid.uuid4().hex[:8]}")

    return _make_key


@dataclass(frozen=True)
class Owner:
    """A key, its row id, and the headers that present it."""

    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_owner(database_url: str, make_key: Callable[..., str]) -> Callable[..., Owner]:
    """``make_owner(name=None) -> Owner``: a new key with its id."""

    def _make_owner(name: str | None = None) -> Owner:
        key = make_key(name)
        with transaction(database_url) as session:
            found = auth.authenticate(session, f"Bearer {key}")
            return Owner(id=found.id, key=key)

    return _make_owner


@pytest.fixture
def owner(make_owner: Callable[..., Owner]) -> Owner:
    """The default caller of the API tests."""
    return make_owner("owner")


@pytest.fixture
def auth_headers(owner: Owner) -> dict[str, str]:
    return owner.headers


# -- the API -----------------------------------------------------------------------


_apps: dict[str, FastAPI] = {}


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """The API over ``settings``. One app per database is built and then
    re-pointed (``configure``) for each test: FastAPI builds a route on its
    first request, which would otherwise cost every test ~50 ms per route.
    A test that changes the app itself (adds a route) must ``create_app``."""
    from fitq.service.api.app import configure, create_app

    url = settings.resolved_database_url
    if url not in _apps:
        _apps[url] = create_app(settings)
    configure(_apps[url], settings)
    return _apps[url]


@pytest.fixture
def anyio_backend() -> str:
    """The API tests are ``@pytest.mark.anyio`` (anyio's own plugin) on asyncio."""
    return "asyncio"


@pytest.fixture
async def client(app: FastAPI, anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """An async client over the app in process (``httpx.ASGITransport``), the
    app's lifespan run around it (start-up checks included)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fitq.test") as c:
            yield c


# -- rows -------------------------------------------------------------------------


@pytest.fixture
def dataset_factory(database_url: str, owner: Owner) -> Callable[..., Dataset]:
    """``dataset_factory(**overrides) -> Dataset``: a row (no files) of the default
    owner: 10 rows, 4 features, 3 classes, unless overridden."""

    def _make(**overrides: Any) -> Dataset:
        sha = overrides.pop("sha256", uuid.uuid4().hex * 2)
        fields: dict[str, Any] = {
            "owner_id": owner.id,
            "name": "factory",
            "format": "csv",
            "sha256": sha,
            "size_bytes": 100,
            "n_rows": 10,
            "n_features": 4,
            "label": "y",
            "kind": "classification",
            "n_classes": 3,
            "target_dim": 1,
            "classes": ["0", "1", "2"],
            "class_counts": [4, 3, 3],
            "feature_names": ["a", "b", "c", "d"],
            "storage_key": f"datasets/{sha}",
            "created_at": utcnow(),
        }
        fields.update(overrides)
        with transaction(database_url) as session:
            row = Dataset(**fields)
            session.add(row)
            session.flush()
            return row

    return _make


@pytest.fixture
def job_factory(database_url: str, owner: Owner) -> Callable[..., Job]:
    """``job_factory(**overrides) -> Job``: a row of the default owner, queued on
    ``iris`` with ``SPEC`` unless overridden. A running job gets a worker and a
    lease unless given."""

    def _make(**overrides: Any) -> Job:
        now = utcnow()
        fields: dict[str, Any] = {
            "owner_id": owner.id,
            "spec": SPEC,
            "dataset_id": "iris",
            "epochs": 3,
            "created_at": now,
            "updated_at": now,
        }
        fields.update(overrides)
        if fields.get("status") == RUNNING:
            fields.setdefault("worker_id", "test-worker")
            fields.setdefault("lease_expires_at", now + timedelta(minutes=5))
            fields.setdefault("attempt", 1)
        with transaction(database_url) as session:
            job = Job(**fields)
            session.add(job)
            session.flush()
            return job

    return _make
