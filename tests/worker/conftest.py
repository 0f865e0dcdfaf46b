"""The worker tests' owner."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from fitq.service.db.engine import session_factory
from fitq.service.db.models import ApiKey


@pytest.fixture
def owner_id(database_url: str, make_key: Any) -> str:
    make_key("worker-owner")
    with session_factory(database_url)() as session:
        found = session.scalar(select(ApiKey.id).where(ApiKey.name == "worker-owner"))
    assert found is not None
    return found
