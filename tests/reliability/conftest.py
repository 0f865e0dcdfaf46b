"""Fixtures of the fault-injection tests: the backend's name for the figures,
an owner, the store URL, and the ``scene`` that holds them all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fitq.service.settings import Settings
from fitq.service.store import ArtifactStore
from tests.reliability.harness import Scene
from tests.support.zygote import Zygote
from tests.worker.conftest import owner_id  # noqa: F401  (a fixture)


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """The warm parent the kill tests fork their workers from (started once)."""
    parent = Zygote()
    yield parent
    parent.close()


@pytest.fixture
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def storage_url(settings: Settings) -> str:
    return settings.resolved_storage_url


@pytest.fixture
def scene(
    database_url: str,
    backend: str,
    owner_id: str,  # noqa: F811  (the fixture imported above)
    home: Path,
    storage_url: str,
    store: ArtifactStore,
    zygote: Zygote,
) -> Scene:
    """Everything a scenario runs against, on SQLite and on PostgreSQL."""
    return Scene(database_url, backend, owner_id, home, storage_url, store, zygote)
