"""What a job and a sweep share as the client holds them: a read-only mapping of the
server's resource (``job["status"]``), its ``id`` and ``status``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fitq.service.client.client import Client

TERMINAL = ("succeeded", "failed", "cancelled")
"""The statuses a job or a sweep never leaves."""


class Resource(Mapping[str, Any]):
    """A resource as the server last returned it; subclasses add its actions."""

    def __init__(self, client: Client, data: dict[str, Any]):
        self._client = client
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self._data.get('status')}>"

    @property
    def id(self) -> str:
        return str(self._data["id"])

    @property
    def status(self) -> str:
        return str(self._data["status"])
