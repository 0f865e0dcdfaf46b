"""A settings error never prints a secret: pydantic's message shows the input
it refused, and for a model-level check (``FITQ_API_THREADS`` too high) that
input is every setting, ``FITQ_API_KEY`` and the database URL's password
included. ``fitq api`` prints that message as it stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from fitq.service.settings import Settings

KEY = "fitq_K3y-that-must-never-be-printed"
PASSWORD = "Pa55w0rd"
SECRETS = [{"FITQ_API_KEY": KEY}, {"FITQ_DATABASE_URL": f"postgresql://u:{PASSWORD}@h/d"}]
"""One secret at a time: pydantic shows the first ~25 characters of the input."""


def leaked(text: str) -> list[str]:
    """The secrets (the key's first 8 characters too) in ``text``."""
    return [s for s in (KEY[:8], PASSWORD) if s in text]


@pytest.mark.parametrize("secret", SECRETS, ids=["api-key", "database-password"])
@pytest.mark.parametrize(
    "bad",
    [{"FITQ_API_THREADS": "100"}, {"FITQ_MAX_EPOCHS": "many"}, {"FITQ_LEASE_SECONDS": "-1"}],
    ids=["model-check", "not-a-number", "out-of-range"],
)
def test_the_validation_error_shows_no_secret(
    monkeypatch: pytest.MonkeyPatch, bad: dict[str, str], secret: dict[str, str]
) -> None:
    for name in [n for n in os.environ if n.startswith("FITQ_")]:
        monkeypatch.delenv(name)
    for name, value in {**secret, **bad}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    text = str(raised.value)
    assert leaked(text) == [], text
    assert list(bad)[0].removeprefix("FITQ_").lower() in text or "FITQ_API_THREADS" in text


@pytest.mark.slow
def test_fitq_api_stops_on_it_without_printing_a_secret(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FITQ_")},
        **SECRETS[0],
        "FITQ_API_THREADS": "100",
        "COLUMNS": "400",
    }
    result = subprocess.run(
        [sys.executable, "-m", "fitq.service.cli", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # no FITQ_HOME: the secrets come first in what pydantic shows
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "FITQ_API_THREADS" in output, output
    assert leaked(output) == [], output
