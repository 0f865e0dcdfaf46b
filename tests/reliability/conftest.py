"""Fixtures of the fault-injection tests: the backend's name for the figures,
an owner, and the store URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fitq.service.settings import Settings
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
