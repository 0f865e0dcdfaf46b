"""Fixtures of the database-outage tests: a PostgreSQL cluster of their own
(``tests/outage/cluster.py``; the main one on 5432 is never touched), a fresh
database on it, and one API and two workers over that database, started once
for this folder and shared by its tests (each checks only its own jobs, and
that every process outlived the outages before it). Package-scoped: all of it
is stopped when the folder's last test is done, not at the end of the suite.

Without Debian's postgresql-common tools the tests are skipped, or fail
when ``CI`` is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from fitq.service.db.engine import engine_for
from tests.outage.cluster import Cluster, exclusive, missing_tool
from tests.outage.stack import start_stack
from tests.support.stack import Stack


@pytest.fixture(scope="package")
def outage_cluster() -> Iterator[Cluster]:
    """The outage cluster, running for this folder's tests, stopped after them."""
    missing = missing_tool()
    if missing is not None:
        message = f"the outage tests need Debian's PostgreSQL cluster tools ({missing} missing)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with exclusive():
        cluster = Cluster.ensure()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="package")
def outage_database(outage_cluster: Cluster) -> Iterator[str]:
    """A fresh database on the outage cluster (name: its ``.rsplit('/')[-1]``); dropped after."""
    name = f"fitq_outage_{uuid.uuid4().hex[:12]}"
    outage_cluster.sql(f'CREATE DATABASE "{name}"')
    url = outage_cluster.url(name)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        outage_cluster.start()  # a failed test may have left it down
        outage_cluster.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="package")
def stack(outage_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``fitq api`` and two ``fitq worker`` over the outage database."""
    with start_stack(tmp_path_factory.mktemp("outage"), outage_database) as started:
        yield started


@pytest.fixture
def database(outage_database: str) -> str:
    """The outage database's name (for pg_stat_activity)."""
    return outage_database.rsplit("/", 1)[-1]
