"""Running the Compose CLI on docker-compose.yml without a Docker engine: the
environment files it reads and the normalized model ``config`` prints."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from tests.deploy.tools import ROOT, run

COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "docker" / "compose.cpu.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PLACEHOLDER = re.compile(r"^(?P<name>[A-Z0-9_]+)=change-me\S*$", re.MULTILINE)


def env_without_compose_vars() -> dict[str, str]:
    """This environment less anything that would fill the compose files' variables."""
    text = COMPOSE_FILE.read_text() + CPU_OVERRIDE.read_text()
    names = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    return {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")}


def _fresh_secret(placeholder: re.Match[str]) -> str:
    return f"{placeholder['name']}={secrets.token_hex(16)}"


def filled_env_file(folder: Path, **overrides: str) -> Path:
    """.env.example as an operator fills it: every placeholder a fresh secret,
    a domain for the TLS profile, then ``overrides`` (an empty value drops the line)."""
    text = PLACEHOLDER.sub(_fresh_secret, ENV_EXAMPLE.read_text())
    text = re.sub(r"^FITQ_DOMAIN=.*$", "FITQ_DOMAIN=fitq.example.org", text, flags=re.MULTILINE)
    for name, value in overrides.items():
        line = f"{name}={value}" if value else ""
        text, count = re.subn(rf"^{name}=.*$", line, text, flags=re.MULTILINE)
        if not count and value:
            text += f"\n{line}\n"
    path = folder / "filled.env"
    path.write_text(text)
    return path


def config(cli: list[str], env_file: Path, *files: Path, profiles: str = "*") -> dict[str, Any]:
    """The normalized model (``config --format json``), every profile on by default."""
    chosen = files or (COMPOSE_FILE,)
    args = [*cli, "--env-file", str(env_file)]
    for path in chosen:
        args += ["-f", str(path)]
    env = {**env_without_compose_vars(), "COMPOSE_PROFILES": profiles}
    result = run([*args, "config", "--format", "json"], env=env)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model
