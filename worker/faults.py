"""Fault-injection hooks for the reliability tests; never set in production."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("fitq.worker")

TEST_DIE_AT_ENV = "FITQ_TEST_DIE_AT"
TEST_DIE_IN_CHECKPOINT_ENV = "FITQ_TEST_DIE_IN_CHECKPOINT"
TEST_STEP_DELAY_ENV = "FITQ_TEST_STEP_DELAY_MS"


@dataclass(frozen=True)
class Faults:
    """Test hooks for the fault-injection tests (tests/reliability): the worker
    kills itself with SIGKILL, as ``kill -9`` would, at a chosen point. Never
    set in production. ``fitq worker`` reads them from the environment:

    - ``FITQ_TEST_DIE_AT=<job id>:<epoch>``: at the first step boundary of that
      epoch of that job, on every attempt;
    - ``FITQ_TEST_DIE_IN_CHECKPOINT=<n>``: half-way through writing the bytes
      of this process's n-th checkpoint (1-based);
    - ``FITQ_TEST_STEP_DELAY_MS=<ms>``: a pause after every step, so that a
      tiny test job is still running when a test wants to stop it mid-epoch
      on a fast machine (the weights are unaffected).
    """

    die_at: tuple[str, int] | None = None
    die_in_checkpoint: int | None = None
    step_delay_seconds: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Faults:
        die_at = None
        if env.get(TEST_DIE_AT_ENV):
            job_id, epoch = env[TEST_DIE_AT_ENV].rsplit(":", 1)
            die_at = (job_id, int(epoch))
        in_checkpoint = env.get(TEST_DIE_IN_CHECKPOINT_ENV)
        delay_ms = float(env.get(TEST_STEP_DELAY_ENV) or 0)
        return cls(die_at, int(in_checkpoint) if in_checkpoint else None, delay_ms / 1000)

    @staticmethod
    def die() -> None:
        log.warning("test hook: dying")
        os.kill(os.getpid(), signal.SIGKILL)
