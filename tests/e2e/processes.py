"""The process tools live in tests/support/processes.py; this module only
keeps tests/deploy's imports working until that folder moves onto
tests/support too."""

from tests.support.processes import (
    FITQ,
    START_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    fitq_env,
    fitq_process,
    free_port,
    run_fitq,
    wait_for_line,
    wait_healthy,
)

__all__ = [
    "FITQ",
    "START_TIMEOUT_SECONDS",
    "STOP_TIMEOUT_SECONDS",
    "fitq_env",
    "fitq_process",
    "free_port",
    "run_fitq",
    "wait_for_line",
    "wait_healthy",
]
