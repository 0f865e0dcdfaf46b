"""Ingest memory: an upload bomb is refused before it is decoded, and the API's
peak resident memory while it arrives stays flat.

A real ``fitq api`` (uvicorn, SQLite) with FITQ_MAX_DATASET_BYTES at 4 MiB and
FITQ_MAX_FEATURES at 1,000 receives each bomb, streamed from a file; its peak
RSS is reset before and read after each upload (``/proc``, Linux).

The bound: every bomb here decodes to at least 30 MiB (the decimal Parquet to
240 MiB, the wide NPZ to 5 M feature names), so decoding any of it — or
holding its cells as pyarrow parsed them — shows as tens of MiB or more. A
refusal costs what any request costs, a few MiB; ``GROWTH_BOUND_MIB`` leaves
room for that and stays far below the smallest bomb. The same bombs at the
sizes the default limits allowed cost the API 1.5–7.9 GB before
(docs/reliability.md, Hardening; ``bench/ingest_memory.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.security import bombs, rss
from tests.support.stack import Stack, live_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not rss.can_reset_peak(), reason="needs /proc/self/clear_refs (Linux)"),
]

MIB = 1 << 20
LIMIT_BYTES = 4 * MIB
MAX_FEATURES = 1_000
GROWTH_BOUND_MIB = 8

BOMBS: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "npz of zeros": (
        "zeros.npz",
        lambda p: bombs.npz_zeros(p, 1_000_000, 10),  # 80 MB of float64 in ~80 KB
        "it decodes to 48000000 bytes",
    ),
    "npz of 5 M features": (
        "wide.npz",
        lambda p: bombs.npz_zeros(p, 1, 5_000_000, "<f4"),
        "5000000 feature columns, limit 1000 (FITQ_MAX_FEATURES)",
    ),
    "zip of 100,000 members": (
        "members.npz",
        lambda p: bombs.zip_members(p, 100_000),
        "the zip holds 100000 members",
    ),
    "parquet of decimals": (
        "decimal.parquet",
        lambda p: bombs.parquet_decimal(p, 600_000, 25),  # 15 M cells of 16 bytes
        "it decodes to 64800000 bytes",
    ),
    "parquet with a long text label": (
        "label.parquet",
        lambda p: bombs.parquet_label(p, 4_000, 10_000),  # 40 MB of label
        "(FITQ_MAX_DATASET_BYTES)",
    ),
    "csv of 16 MiB": (
        "cells.csv",
        lambda p: bombs.csv_cells(p, 16 * MIB, 10),  # 7.5 M cells
        "(FITQ_MAX_DATASET_BYTES)",
    ),
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("ingest-memory")
    with live_stack(
        workdir,
        workers=0,
        FITQ_MAX_DATASET_BYTES=str(LIMIT_BYTES),
        FITQ_MAX_FEATURES=str(MAX_FEATURES),
    ) as stack:
        yield stack


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_bomb_is_refused_and_the_api_stays_flat(api: Stack, bomb: str, tmp_path: Path) -> None:
    filename, write, message = BOMBS[bomb]
    path = write(tmp_path / filename)
    pid = api.apis[0].pid
    api.http.get("/v1/datasets").raise_for_status()  # routes and connections warm
    before = rss.rss(pid)
    rss.reset_peak(pid)
    with open(path, "rb") as f:
        r = api.http.post("/v1/datasets", files={"file": (filename, f)})
    grown_mib = (rss.peak(pid) - before) / MIB
    assert r.status_code in (413, 422), r.text
    assert message in r.json()["detail"]
    assert grown_mib < GROWTH_BOUND_MIB, f"{bomb}: the API grew {grown_mib:.1f} MiB"
    assert api.http.get("/v1/datasets").json()["items"][-1]["builtin"]  # nothing stored
