"""The soak (bench/soak.py) in its CI length: 1 minute of 3-epoch jobs (one
every 2 s), kill -9 of a worker every ~20 s, every 5th job cancelled, on
PostgreSQL: the hour-long run's mix, denser, so a short run meets every fault
and the workers keep up (no long drain). ``FITQ_SOAK_MINUTES`` sets another
length. Every invariant is checked by the soak as it runs; this test asserts
that none was broken and that the faults were really injected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import SoakConfig, run_soak

MINUTES = float(os.environ.get("FITQ_SOAK_MINUTES", "1"))
CONFIG = SoakConfig(
    minutes=MINUTES, submit_every=2.0, kill_every=20.0, cancel_every_nth=5, epochs=3
)
START_AND_STOP_SECONDS = 180
"""Room for starting the API, the warm parent and the workers, and tearing them down."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.timeout(int(MINUTES * 60 + CONFIG.drain_seconds + START_AND_STOP_SECONDS)),
]


def test_soak_with_kills_and_cancels_loses_nothing(postgres_url: str, tmp_path: Path) -> None:
    result = run_soak(postgres_url, tmp_path, CONFIG)
    figures = "\n".join(f"{name}: {value}" for name, value in result.figures())

    assert result.violations == [], figures
    assert result.lost == 0, figures
    assert result.submitted > 0 and sum(result.statuses.values()) == result.submitted, figures
    assert result.api_errors == 0, figures
    if CONFIG.kill_every < MINUTES * 60:
        assert result.kills >= 1, figures
    if result.submitted >= CONFIG.cancel_every_nth:
        assert result.cancels_asked >= 1, figures
