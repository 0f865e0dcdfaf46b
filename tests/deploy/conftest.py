"""An S3-compatible server for the deployment tests: moto's server mode on
127.0.0.1 and a free port, in a thread of the test process, reached over real
HTTP by in-process stores and by the ``fitq`` processes alike."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from moto.server import ThreadedMotoServer

from fitq.service.store import ArtifactStore, storage_options
from tests.support.processes import free_port

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "fitq-test",
    "AWS_SECRET_ACCESS_KEY": "fitq-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""What a deployment puts in the environment of the API and the workers."""


@dataclass(frozen=True)
class S3:
    endpoint_url: str
    bucket: str

    @property
    def url(self) -> str:
        """The store URL a deployment sets as ``FITQ_STORAGE_URL``."""
        return f"s3://{self.bucket}/fitq"

    def store(self) -> ArtifactStore:
        return ArtifactStore(
            self.url, **storage_options(self.url, s3_endpoint_url=self.endpoint_url)
        )

    def env(self) -> dict[str, str]:
        """The environment of a process that uses this store."""
        return {
            **S3_CREDENTIALS,
            "FITQ_STORAGE_URL": self.url,
            "FITQ_S3_ENDPOINT_URL": self.endpoint_url,
        }


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server for the session, with the test credentials in os.environ."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_CREDENTIALS.items():
            mp.setenv(name, value)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> S3:
    """A fresh, empty bucket on the session's S3 server."""
    found = S3(s3_endpoint, f"fitq-{uuid.uuid4().hex[:12]}")
    found.store().fs.mkdir(found.bucket)
    return found
