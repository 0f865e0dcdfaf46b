"""The queue tests' owner: a key's id, as the jobs' ``owner_id``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import ApiKey


@pytest.fixture
def owner(database_url: str, make_key: Callable[..., str]) -> str:
    make_key("queue-owner")
    with session_factory(database_url)() as session:
        found = session.scalar(select(ApiKey.id).where(ApiKey.name == "queue-owner"))
    assert found is not None
    return found
