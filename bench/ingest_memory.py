"""Ingest memory: the API's peak RSS while it receives each upload bomb.

For each bomb (``tests/security/bombs.py``, sized to what the default limits
let through before ingest counted what it decodes; and one dataset just under
``FITQ_MAX_DATASET_BYTES``, which is accepted), a fresh ``fitq api``
(SQLite, a file store, the default limits) is started, its peak RSS reset
(``/proc/PID/clear_refs``), the file uploaded, and the peak read back:
growth = ``VmHWM`` after the upload − ``VmRSS`` before it. Prints a row per
bomb (status, growth, seconds, the answer's first words) and optionally
writes them as JSON. Nothing is asserted; the test that asserts a bound is
``tests/security/test_ingest_memory.py``.

    .venv/bin/python -m bench.ingest_memory [--only npz-zeros,csv-cells] [--json out.json]

Each bomb is written to a temporary folder first (the CSV is 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from tests.security import bombs, rss
from tests.support.stack import live_stack

MIB = 1 << 20
UPLOAD_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class Bomb:
    name: str
    filename: str
    what: str
    write: Callable[[Path], Path]


BOMBS = (
    Bomb(
        "npz-zeros",
        "zeros.npz",
        "x float64 [5,000,000, 100] of zeros, deflated: 4.0 GB in the zip",
        lambda p: bombs.npz_zeros(p, 5_000_000, 100),
    ),
    Bomb(
        "npz-wide",
        "wide.npz",
        "x float32 [1, 50,000,000] of zeros",
        lambda p: bombs.npz_zeros(p, 1, 50_000_000, "<f4"),
    ),
    Bomb(
        "zip-members",
        "members.npz",
        "a zip of 3,000,000 empty members",
        lambda p: bombs.zip_members(p, 3_000_000),
    ),
    Bomb(
        "parquet-decimal",
        "decimal.parquet",
        "2,700,000 rows × 100 decimal128 columns of one value",
        lambda p: bombs.parquet_decimal(p, 2_700_000, 100),
    ),
    Bomb(
        "parquet-label",
        "label.parquet",
        "a text label of 200,000 distinct 10 KB strings (2 GB decoded)",
        lambda p: bombs.parquet_label(p, 200_000, 10_000),
    ),
    Bomb(
        "npz-at-limit",
        "limit.npz",
        "not a bomb: x float64 [2,600,000, 100] of zeros, 1.04 GB decoded (accepted)",
        lambda p: bombs.npz_zeros(p, 2_600_000, 100),
    ),
    Bomb(
        "csv-cells",
        "cells.csv",
        "1 GiB of '0,…,0' rows, 10 columns (483 M feature cells)",
        lambda p: bombs.csv_cells(p, (1 << 30) - MIB, 10),
    ),
)


@dataclass
class Result:
    bomb: str
    what: str
    file_bytes: int
    status: int
    rss_before_mib: float
    peak_growth_mib: float
    seconds: float
    detail: str


def measure(bomb: Bomb, workdir: Path) -> Result:
    path = bomb.write(workdir / bomb.filename)
    try:
        with live_stack(workdir / bomb.name, workers=0) as stack:
            pid = stack.apis[0].pid
            with httpx.Client(
                base_url=stack.url, headers=stack.headers, timeout=UPLOAD_TIMEOUT_SECONDS
            ) as http:
                http.get("/v1/datasets").raise_for_status()  # warm: routes, database
                before = rss.rss(pid)
                rss.reset_peak(pid)
                started = time.monotonic()
                with open(path, "rb") as f:
                    r = http.post("/v1/datasets", files={"file": (bomb.filename, f)})
                seconds = time.monotonic() - started
                grown = rss.peak(pid) - before
            detail = r.json().get("detail", "") if r.status_code != 201 else "accepted"
        return Result(
            bomb=bomb.name,
            what=bomb.what,
            file_bytes=path.stat().st_size,
            status=r.status_code,
            rss_before_mib=round(before / MIB, 1),
            peak_growth_mib=round(grown / MIB, 1),
            seconds=round(seconds, 2),
            detail=str(detail)[:160],
        )
    finally:
        os.unlink(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated bomb names")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    wanted = {n for n in args.only.split(",") if n}
    results = []
    with tempfile.TemporaryDirectory(prefix="fitq-bombs-") as tmp:
        for bomb in BOMBS:
            if wanted and bomb.name not in wanted:
                continue
            result = measure(bomb, Path(tmp))
            results.append(result)
            print(
                f"{result.bomb:16} {result.file_bytes / MIB:9.1f} MiB  {result.status}  "
                f"+{result.peak_growth_mib:9.1f} MiB  {result.seconds:7.2f} s  {result.detail}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
