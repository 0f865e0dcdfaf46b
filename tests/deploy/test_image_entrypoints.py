"""The images' command lines, run directly (there is no Docker engine here):
the compose ``migrate`` command, the worker image's ENTRYPOINT + CMD and the
API image's, each with the environment the image sets (FITQ_HOME, as the
non-root user's home), and their HEALTHCHECK script. The worker starts, says
so in JSON, is healthy, and stops cleanly on SIGTERM (what `docker stop` sends)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfile import command_line, stages
from tests.deploy.tools import ROOT
from tests.support.processes import (
    STOP_TIMEOUT_SECONDS,
    fitq_env,
    fitq_process,
    free_port,
    wait_for_line,
    wait_healthy,
)

pytestmark = pytest.mark.slow

HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
FITQ_BIN = str(Path(sys.executable).parent / "fitq")


def local(argv: list[str]) -> list[str]:
    """The image's command line with its ``fitq`` the virtualenv's."""
    assert argv[0] == "fitq"
    return [FITQ_BIN, *argv[1:]]


def healthcheck(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), target],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def image_env(tmp_path: Path) -> dict[str, str]:
    """What the runtime stage sets (FITQ_HOME under the user's home), JSON logs as in compose."""
    home = tmp_path / "home" / "fitq" / ".fitq"
    home.mkdir(parents=True)
    return fitq_env(home, FITQ_LOG_FORMAT="json")


def test_migrate_then_worker_and_api_as_the_images_run_them(
    tmp_path: Path, image_env: dict[str, str]
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    migrate = local(["fitq", *compose["services"]["migrate"]["command"]])
    done = subprocess.run(migrate, env=image_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    worker_cmd = command_line(stages(), "worker")
    assert worker_cmd == ["fitq", *compose["services"]["worker"]["command"]]
    api_cmd = command_line(stages(), "api")
    assert api_cmd == ["fitq", *compose["services"]["api"]["command"]]
    port = free_port()
    api_cmd[api_cmd.index("--port") + 1] = str(port)  # 8000 may be taken on this machine
    api_cmd[api_cmd.index("--host") + 1] = "127.0.0.1"

    worker_log, api_log = tmp_path / "worker.log", tmp_path / "api.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            local(worker_cmd), env=image_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        with fitq_process(api_cmd[1:], image_env, api_log) as api:
            wait_for_line(worker_log, "worker started")
            wait_healthy(f"http://127.0.0.1:{port}", api, api_log)
            worker_check = healthcheck("worker", image_env)
            assert worker_check.returncode == 0, worker_check.stderr
            api_env = {**image_env, "FITQ_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}
            assert healthcheck("api", api_env).returncode == 0
            worker.send_signal(signal.SIGTERM)  # `docker stop`
            assert worker.wait(STOP_TIMEOUT_SECONDS) == 0, worker_log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    lines = [json.loads(line) for line in worker_log.read_text().splitlines()]
    started = [r for r in lines if r["msg"] == "worker started"]
    assert started[0]["worker_id"] and started[0]["device"] == "cpu"
    assert any(r["msg"] == "worker stopped" for r in lines)
    api_lines = [json.loads(line) for line in api_log.read_text().splitlines()]
    assert any(r["logger"] == "uvicorn.access" and r.get("status") == 200 for r in api_lines)


def test_worker_healthcheck_fails_without_its_database(image_env: dict[str, str]) -> None:
    env = {**image_env, "FITQ_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    check = healthcheck("worker", env)
    assert check.returncode == 1 and check.stderr.startswith("unhealthy:"), check.stderr
