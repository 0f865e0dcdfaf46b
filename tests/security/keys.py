"""Where a plaintext key could hide: every column of every table, the SQLite
file itself, the artifact store, and log records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import MetaData, select
from sqlalchemy.engine import make_url

from fitq.service.db.engine import engine_for
from fitq.service.logs import JsonFormatter


def needles(keys: Iterable[str]) -> list[str]:
    """Each key and its secret part (a leak of the part is a leak too)."""
    found: list[str] = []
    for key in keys:
        found += [key, key.removeprefix("fitq_")]
    return found


def dump_database(url: str) -> Iterator[str]:
    """``table.column=value`` for every column of every row of every table."""
    engine = engine_for(url)
    metadata = MetaData()
    metadata.reflect(bind=engine)
    assert metadata.tables, "no tables reflected"
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for column, value in row._mapping.items():
                    if isinstance(value, bytes | bytearray | memoryview):
                        value = bytes(value).decode("latin-1")
                    elif isinstance(value, dict | list):
                        value = json.dumps(value)
                    yield f"{table.name}.{column}={value}"


def database_files(url: str) -> list[Path]:
    """The SQLite database file and its journals (none for a server database)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return []
    base = Path(parsed.database)
    return [p for p in (base, Path(f"{base}-wal"), Path(f"{base}-journal")) if p.exists()]


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def leaks_in_files(paths: Iterable[Path], secrets: list[str]) -> list[str]:
    leaks = []
    for path in paths:
        data = path.read_bytes()
        leaks += [f"{path}: {s[:12]}…" for s in secrets if s.encode() in data]
    return leaks


class Capture(logging.Handler):
    """Every record, rendered both ways fitq writes logs (text and JSON) plus
    every attribute a formatter could print."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.text = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
        self.json = JsonFormatter()

    CLIENT_LOGGERS = ("httpx", "httpcore")
    """The test's own HTTP client: not the service's logs."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in self.CLIENT_LOGGERS:
            return
        self.lines.append(self.text.format(record))
        self.lines.append(self.json.format(record))
        self.lines.append(repr(vars(record)))
