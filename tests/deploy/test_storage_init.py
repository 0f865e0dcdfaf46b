"""docker/storage_init.py, the compose stack's one-shot bucket set-up, run as
the ``storage-init`` service runs it, against a real S3 protocol server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.deploy.conftest import S3, S3_CREDENTIALS
from tests.deploy.tools import ROOT
from tests.support.processes import fitq_env, free_port

SCRIPT = ROOT / "docker" / "storage_init.py"


def storage_init(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def service_env(tmp_path: Path, endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    """What compose gives the service: fitq's settings and the store's key."""
    settings = {
        **S3_CREDENTIALS,
        "FITQ_STORAGE_URL": f"s3://{bucket}/artifacts",
        "FITQ_S3_ENDPOINT_URL": endpoint,
        **extra,
    }
    return fitq_env(tmp_path / "home", **settings)


def new_bucket() -> str:
    return f"fitq-{uuid.uuid4().hex[:12]}"


class TestStorageInit:
    def test_creates_the_bucket_then_changes_nothing(
        self, tmp_path: Path, s3_endpoint: str
    ) -> None:
        bucket = new_bucket()
        env = service_env(tmp_path, s3_endpoint, bucket)
        first = storage_init(env)
        assert first.returncode == 0, first.stderr
        assert f"bucket {bucket} created" in first.stdout
        assert S3(s3_endpoint, bucket).store().fs.exists(bucket)

        S3(s3_endpoint, bucket).store().put_bytes("kept", b"x")
        again = storage_init(env)
        assert again.returncode == 0, again.stderr
        assert f"bucket {bucket} already there" in again.stdout
        assert S3(s3_endpoint, bucket).store().get_bytes("kept") == b"x"

    def test_waits_for_a_store_that_is_still_starting(self, tmp_path: Path) -> None:
        port = free_port()
        bucket = new_bucket()
        env = service_env(tmp_path, f"http://127.0.0.1:{port}", bucket)
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--wait-seconds", "120"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        try:
            server.start()  # after the set-up's first attempt was refused
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            server.stop()
        assert proc.returncode == 0, err
        assert f"bucket {bucket} created" in out

    def test_refuses_the_placeholder_secret(self, tmp_path: Path, s3_endpoint: str) -> None:
        bucket = new_bucket()
        env = service_env(tmp_path, s3_endpoint, bucket)
        env["AWS_SECRET_ACCESS_KEY"] = "change-me-s3-secret"
        refused = storage_init(env)
        assert refused.returncode == 1
        assert "FITQ_S3_SECRET_ACCESS_KEY in .env" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not S3(s3_endpoint, bucket).store().fs.exists(bucket)

    @pytest.mark.parametrize("url", ["file:///tmp/x", "s3://"])
    def test_refuses_a_store_that_is_not_a_bucket(
        self, tmp_path: Path, s3_endpoint: str, url: str
    ) -> None:
        env = service_env(tmp_path, s3_endpoint, new_bucket(), FITQ_STORAGE_URL=url)
        refused = storage_init(env)
        assert refused.returncode == 1
        assert "must be s3://BUCKET" in refused.stderr
