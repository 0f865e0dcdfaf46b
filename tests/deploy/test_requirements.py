"""docker/requirements.py: what each image installs before fitq's code, read
from pyproject.toml alone (the extras, self-references expanded)."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from tests.deploy.tools import ROOT

SCRIPT = ROOT / "docker" / "requirements.py"
PYPROJECT = ROOT / "pyproject.toml"


def names(*extras: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(PYPROJECT), *extras],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == len(set(lines)), "each requirement once"
    return {line.split(">")[0].split("[")[0].split("=")[0].split("<")[0].strip() for line in lines}


def test_the_api_image_gets_the_server_and_s3_but_not_torch() -> None:
    found = names("server", "s3")
    assert {"httpx", "fastapi", "sqlalchemy", "pyarrow", "s3fs", "psycopg"} <= found
    assert "torch" not in found and "fitq" not in found


def test_a_worker_image_gets_torch_and_the_server_parts() -> None:
    found = names("worker", "s3")
    assert {"torch", "fastapi", "sqlalchemy", "s3fs"} <= found
    assert "fitq" not in found, "fitq[server] is expanded, not installed from an index"


def test_every_extra_dependency_is_covered() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    wanted = set(names("dev"))
    for extra in ("server", "worker", "s3"):
        assert names(extra) <= wanted, extra
    assert names() == {r.split(">")[0].split("[")[0].strip() for r in project["dependencies"]}


def test_an_unknown_extra_is_refused() -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        names("nope")
    assert "no extra 'nope'" in failed.value.stderr
