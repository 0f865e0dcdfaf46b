"""The client commands on a client-only install (no extras): ``fitq --help``,
``fitq jobs``, ``fitq submit``, ``fitq sweep``, ``fitq sweeps`` and ``fitq compare`` import
nothing of the server. Each runs in a fresh interpreter where the server's
packages fail to import, as they would when not installed; against an API
nobody listens on, the commands then end with the documented "cannot reach"
exit code, not a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fitq.service.cli.common import EXIT_UNREACHABLE
from tests.conftest import SPEC

SERVER_ONLY = (
    "alembic",
    "fastapi",
    "fsspec",
    "prometheus_client",
    "psycopg",
    "pyarrow",
    "safetensors",
    "sklearn",
    "sqlalchemy",
    "starlette",
    "torch",
    "uvicorn",
)

RUN_WITHOUT_SERVER = f"""
import sys
from importlib.abc import MetaPathFinder

class NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {SERVER_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (client-only install)")
        return None

sys.meta_path.insert(0, NotInstalled())
from fitq.service.cli import app
app(sys.argv[1:], prog_name="fitq")
"""


def fitq_without_server(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "FITQ_HOME": str(tmp_path / "home"),
        "FITQ_API_URL": f"http://127.0.0.1:{port}",
        "FITQ_API_KEY": "fitq_not_a_real_key",
    }
    return subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_SERVER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = fitq_without_server("--help", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    commands = ("up", "api", "worker", "submit", "jobs", "sweep", "sweeps", "datasets", "db")
    for command in (*commands, "compare"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["jobs", "--tag", "t", "--sort", "-val_loss"],
        ["submit", "SPEC"],
        ["sweep", "SWEEP", "--follow"],
        ["sweeps"],
        ["compare", "a", "b"],
    ],
)
def test_client_commands_reach_for_the_api(command: list[str], tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"spec": SPEC, "parameters": {"seed": {"values": [0, 1]}}}))
    files = {"SPEC": str(spec), "SWEEP": str(sweep)}
    args = [files.get(arg, arg) for arg in command]
    result = fitq_without_server(*args, tmp_path=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_UNREACHABLE, result.stderr
    assert result.stderr.startswith("error: cannot reach fitq at http://127.0.0.1:")
