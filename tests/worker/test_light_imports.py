"""The API keys each job for packing at submit with the engine's `pack.compat`, which is
pure stdlib; the engine's packages import torch only when a name that needs it is used
(PEP 562), so the API (whose image has no torch) never loads it."""

from __future__ import annotations

import subprocess
import sys

import pytest


def modules_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after ``statement``."""
    listing = "import sys; print(' '.join({m.split('.')[0] for m in sys.modules}))"
    code = f"{statement}\n{listing}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_api_app_and_job_submission_do_not_import_torch() -> None:
    loaded = modules_after(
        "import fitq.service.api.app, fitq.service.jobs.submission\n"
        "from fitq.worker.engine.pack.compat import compatibility_key"
    )
    assert "fitq" in loaded and "torch" not in loaded


def test_the_engines_names_are_still_there_on_first_use() -> None:
    from fitq.worker.engine import Trainer, TrainingError
    from fitq.worker.engine.pack import MemberStatus, Pack, compatibility_key
    from fitq.worker.engine.pack.pack import Pack as PackItself
    from fitq.worker.engine.trainer import Trainer as TrainerItself

    assert (Trainer, Pack) == (TrainerItself, PackItself)
    assert issubclass(TrainingError, Exception) and MemberStatus.FAILED.value == "failed"
    assert callable(compatibility_key)
    with pytest.raises(ImportError, match="cannot import name 'Nothing'"):
        from fitq.worker.engine import Nothing  # type: ignore[attr-defined]  # noqa: F401
