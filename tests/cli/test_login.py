"""``fitq login``/``logout``, ``--version`` and ``keys list`` as a user runs them
(the real command, a subprocess) against a live ``fitq up``: after a login, the
CLI finds the server and key from any directory with no ``FITQ_*`` set."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import fitq
from fitq.service.cli.common import EXIT_UNREACHABLE
from tests.support.processes import FITQ, free_port
from tests.support.stack import Stack, fitq_up

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fitq_up(tmp_path_factory.mktemp("login")) as running:
        yield running


@pytest.fixture
def user(live: Stack, tmp_path: Path) -> dict[str, str]:
    """A user's environment: no FITQ_* at all, a config folder of their own."""
    env = {k: v for k, v in live.env.items() if not k.startswith("FITQ_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


def fitq_in(
    cwd: Path, env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FITQ, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_login_then_any_directory_finds_the_server(
    live: Stack, user: dict[str, str], tmp_path: Path
) -> None:
    done = fitq_in(tmp_path, user, "login", live.url, stdin=live.key + "\n")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "xdg" / "fitq" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert live.key in path.read_text()

    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    jobs = fitq_in(elsewhere, user, "jobs", "--json")
    assert jobs.returncode == 0, jobs.stderr
    assert isinstance(json.loads(jobs.stdout), list)

    assert fitq_in(elsewhere, user, "logout").returncode == 0
    assert not path.exists()
    gone = fitq_in(elsewhere, user, "--url", live.url, "jobs")
    assert gone.returncode == 1 and "401" in gone.stderr


def test_a_refused_key_is_one_line_and_stores_nothing(
    live: Stack, user: dict[str, str], tmp_path: Path
) -> None:
    refused = fitq_in(tmp_path, user, "login", live.url, "--key", "fitq_not-a-key")
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("error:") and "401" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "xdg" / "fitq").exists()


def test_an_unreachable_server_exits_3(user: dict[str, str], tmp_path: Path) -> None:
    away = f"http://127.0.0.1:{free_port()}"
    result = fitq_in(tmp_path, user, "login", away, "--key", "fitq_x")
    assert result.returncode == EXIT_UNREACHABLE and "cannot reach" in result.stderr


def test_version_is_the_installed_one(user: dict[str, str], tmp_path: Path) -> None:
    result = fitq_in(tmp_path, user, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"fitq {fitq.__version__}"


def test_keys_list_shows_names_and_dates_never_the_key(live: Stack, tmp_path: Path) -> None:
    created = fitq_in(tmp_path, live.env, "keys", "create", "listed")
    assert created.returncode == 0, created.stderr
    new_key = created.stdout.strip()
    assert fitq_in(tmp_path, live.env, "keys", "revoke", "listed").returncode == 0

    listed = fitq_in(tmp_path, live.env, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    keys = {k["name"]: k for k in json.loads(listed.stdout)}
    assert keys["local"]["revoked_at"] is None and keys["listed"]["revoked_at"] is not None
    assert set(keys["listed"]) == {"name", "created_at", "revoked_at"}
    table = fitq_in(tmp_path, live.env, "keys", "list")
    for secret in (live.key, new_key):
        assert secret not in listed.stdout + table.stdout
    assert "listed" in table.stdout
