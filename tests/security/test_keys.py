"""API keys: 256-bit random with a ``fitq_`` prefix, shown once, stored only as
SHA-256, compared in constant time, never logged; 401 with ``WWW-Authenticate``.

The leak tests run a whole request flow (keys from the CLI's path and from
``FITQ_API_KEY``, an upload, submissions, reads, a cancel, a bad key) and then
look for any plaintext key in every column of every table (SQLite and
PostgreSQL), the SQLite file and its journal, the store, and every log record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fitq.service import auth
from fitq.service.settings import Settings
from tests.api.conftest import csv_bytes
from tests.conftest import SPEC, Owner
from tests.security import keys as where

pytestmark = pytest.mark.anyio


class TestKeyFormat:
    def test_256_random_bits_behind_the_prefix(self) -> None:
        keys = {auth.generate_key() for _ in range(200)}
        assert len(keys) == 200
        for key in keys:
            assert key.startswith("fitq_")
            secret = key.removeprefix("fitq_")
            raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
            assert len(raw) * 8 == 256

    def test_stored_as_its_sha256(self) -> None:
        key = auth.generate_key()
        assert auth.hash_key(key) == hashlib.sha256(key.encode()).hexdigest()


async def test_authentication_compares_in_constant_time(
    client: httpx.AsyncClient, owner: Owner, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert (await client.get("/v1/jobs", headers=owner.headers)).status_code == 200
    digest = auth.hash_key(owner.key)
    assert (digest, digest) in compared


# -- the flow whose traces are searched ------------------------------------------------------

ENV_KEY = auth.generate_key()
WRONG_KEY = auth.generate_key()  # presented, refused, and must not be kept anywhere either


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_key": ENV_KEY})


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[where.Capture]:
    """Every log record at DEBUG of every logger (the service's, uvicorn's,
    SQLAlchemy's with its statements and parameters, …) while the test runs."""
    handler = where.Capture()
    root = logging.getLogger()
    names = ["", "fitq", "uvicorn", "uvicorn.access", "uvicorn.error", "sqlalchemy", "starlette"]
    for name in names:
        caplog.set_level(logging.DEBUG, logger=name)
    root.addHandler(handler)
    for name in names[1:]:  # loggers that do not propagate still reach the capture
        if not logging.getLogger(name).propagate:
            logging.getLogger(name).addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name in names[1:]:
            logging.getLogger(name).removeHandler(handler)


async def request_flow(client: httpx.AsyncClient, owner: Owner) -> list[str]:
    """Everything a key touches; returns the plaintext keys used."""
    env = {"Authorization": f"Bearer {ENV_KEY}"}
    r = await client.post(
        "/v1/datasets",
        headers=owner.headers,
        files={"file": ("train.csv", csv_bytes(), "text/csv")},
        data={"name": "train"},
    )
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    spec = {**SPEC, "model": {**SPEC["model"]}, "dataset_id": dataset_id}
    r = await client.post("/v1/jobs", json=spec, headers={**owner.headers, "Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert (await client.post("/v1/jobs", json=SPEC, headers=env)).status_code == 201
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/metrics", "/v1/jobs", "/v1/datasets"):
        assert (await client.get(path, headers=owner.headers)).status_code == 200, path
    assert (
        await client.post(f"/v1/jobs/{job_id}/cancel", headers=owner.headers)
    ).status_code == 202
    assert (await client.get(f"/v1/jobs/{job_id}", headers=env)).status_code == 404
    bad = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {WRONG_KEY}"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"] == "Bearer"
    return [owner.key, ENV_KEY, WRONG_KEY]


async def test_no_plaintext_key_in_the_database_or_the_store(
    client: httpx.AsyncClient,
    make_owner: Callable[..., Owner],
    database_url: str,
    tmp_path: Path,
) -> None:
    owner = make_owner("alice")
    used = await request_flow(client, owner)
    secrets = where.needles(used)

    dump = list(where.dump_database(database_url))
    assert any(line.startswith("api_keys.key_hash=") for line in dump)  # the dump is real
    for key in (owner.key, ENV_KEY):
        assert f"api_keys.key_hash={auth.hash_key(key)}" in dump
    leaks = [line for line in dump for s in secrets if s in line]
    assert leaks == [], leaks
    files = where.database_files(database_url) + where.files_under(tmp_path)
    assert where.leaks_in_files(files, secrets) == []


async def test_no_key_in_any_log_record(
    client: httpx.AsyncClient, make_owner: Callable[..., Owner], captured: where.Capture
) -> None:
    owner = make_owner("bob")
    used = await request_flow(client, owner)
    assert len(captured.lines) > 30  # the capture saw the flow (SQL statements at least)
    secrets = where.needles(used)
    leaks = [line[:200] for line in captured.lines for s in secrets if s in line]
    assert leaks == [], leaks


# -- the real processes: `fitq keys create` and `fitq api` under uvicorn --------------------


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_real_processes_show_a_key_once_and_never_log_it(tmp_path: Path, log_format: str) -> None:
    """``fitq keys create`` prints the key alone on stdout, once; ``fitq api``
    (uvicorn, access log on) serves a flow with it, a ``FITQ_API_KEY`` and a
    wrong key, and its whole output holds none of them."""
    from tests.support.processes import fitq_env, fitq_process, free_port, run_fitq, wait_healthy

    env_key = auth.generate_key()
    env = fitq_env(tmp_path / "home", FITQ_API_KEY=env_key, FITQ_LOG_FORMAT=log_format)
    assert run_fitq(["db", "upgrade"], env).returncode == 0
    created = run_fitq(["keys", "create", "carol"], env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("fitq_")
    assert key not in created.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    with fitq_process(["api", "--port", str(port)], env, log) as proc:
        wait_healthy(url, proc, log)
        with httpx.Client(base_url=url, timeout=30) as http:
            for k in (key, env_key):
                headers = {"Authorization": f"Bearer {k}"}
                r = http.post(
                    "/v1/datasets", headers=headers, files={"file": ("t.csv", csv_bytes())}
                )
                assert r.status_code == 201, r.text
                assert http.post("/v1/jobs", json=SPEC, headers=headers).status_code == 201
                assert http.get("/v1/jobs", headers=headers).status_code == 200
            bad = http.get("/v1/jobs", headers={"Authorization": f"Bearer {WRONG_KEY}"})
            assert bad.status_code == 401
    output = log.read_text(errors="replace")
    assert "/v1/jobs" in output  # the access log was on and captured
    leaks = [s[:12] for s in where.needles([key, env_key, WRONG_KEY]) if s in output]
    assert leaks == [], output
    home_files = where.files_under(tmp_path / "home")
    assert where.leaks_in_files(home_files, where.needles([key, env_key, WRONG_KEY])) == []
