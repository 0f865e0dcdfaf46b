"""Every tunable of fitq, read from the environment (``FITQ_`` prefix).

With nothing set, every command uses the embedded layout under
``./.fitq/`` (or ``$FITQ_HOME``): a SQLite database and a file artifact
store, so ``fitq up``, ``fitq api``, ``fitq worker`` and ``fitq keys`` all
share one database and one store.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fitq.service import deploy_checks

GIB = 1024**3
POOL_SIZE = 20
"""Database connections each process keeps open (``db/engine.py``'s pool). The
API's threads must fit in it (``api_threads`` + ``api_read_threads``, each
holding at most one): a request thread then never waits for a connection that
only another queued request's thread could give back. Here rather than in
``db/engine.py`` so that the settings (which the client-only CLI reads) do not
import SQLAlchemy."""


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting's message would show its input, and a
    # model-level check's input is every setting (FITQ_API_KEY, the database password).
    model_config = SettingsConfigDict(env_prefix="FITQ_", extra="ignore", hide_input_in_errors=True)

    home: Path = Field(default=Path(".fitq"), description="Embedded state folder.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite under home."
    )
    storage_url: str | None = Field(
        default=None, description="fsspec URL of the artifact store; default file:// under home."
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO, …) for an s3:// store; default AWS. "
        "Credentials come from the standard AWS variables.",
    )
    api_key: str | None = Field(
        default=None, description="A key `fitq up`/`fitq api` register and the CLI uses."
    )
    api_url: str = Field(
        default="http://127.0.0.1:8000", description="Where the CLI finds the API."
    )

    lease_seconds: float = Field(default=30.0, gt=0, description="A running job's lease.")
    poll_seconds: float = Field(default=0.5, gt=0, description="Idle worker's queue poll interval.")
    checkpoint_seconds: float = Field(
        default=60.0, gt=0, description="Mid-epoch checkpoint interval."
    )
    gc_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="`fitq store gc` leaves objects younger than this (a write in progress).",
    )
    # Limits on what a client may ask for; each refusal names its setting (docs/api.md, Limits).
    max_upload_bytes: int = Field(default=GIB, gt=0, description="Largest accepted upload.")
    max_npz_uncompressed_bytes: int = Field(
        default=4 * GIB,
        gt=0,
        description="What an NPZ's members may add up to uncompressed, per its zip directory.",
    )
    max_dataset_cells: int = Field(default=500_000_000, gt=0, description="rows × features cap.")
    max_dataset_bytes: int = Field(
        default=GIB,
        gt=0,
        description="What one dataset decodes to (features as float32, targets as stored), "
        "counted from the file's headers before anything is read; ingest holds about this much.",
    )
    max_features: int = Field(default=100_000, gt=0, description="Feature columns of a dataset.")
    max_stored_bytes_per_key: int = Field(
        default=100 * GIB,
        gt=0,
        description="Bytes one key's datasets take in the store (their canonical arrays).",
    )
    max_epochs: int = Field(default=10_000, gt=0, description="Epochs of one job.")
    max_parameters: int = Field(
        default=100_000_000, gt=0, description="Weights and biases of one job's model."
    )
    max_training_bytes: int = Field(
        default=16 * GIB,
        gt=0,
        description="Memory a job may need to train, as estimated at submit "
        "(service/jobs/budget.py): weights, optimizer state, activations, data.",
    )
    max_job_seconds: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="Longest a job may run, from its first start; a spec's max_seconds "
        "may only ask for less.",
    )
    max_priority: int = Field(
        default=100, description="Highest priority a spec may ask for (the spec allows 100)."
    )
    max_attempts: int = Field(
        default=10, ge=1, description="Most attempts a spec may ask for (the spec allows 10)."
    )
    max_running_jobs_per_key: int = Field(
        default=64,
        gt=0,
        description="Jobs of one key running at once; the claim skips the key's queued jobs "
        "while it is at the limit.",
    )
    max_predict_rows: int = Field(default=10_000, gt=0, description="Rows per predict call.")
    max_queued_jobs_per_key: int = Field(
        default=1_000, gt=0, description="Jobs one key may have queued (not yet started) at once."
    )
    max_json_bytes: int = Field(
        default=16 * 1024 * 1024,
        gt=0,
        description="Largest JSON body (a job spec, a predict call), counted as it arrives.",
    )
    predict_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description="Activation memory one predict call may use: its rows go through the "
        "model in chunks sized by the model's widest layer.",
    )
    max_streams: int = Field(
        default=100, gt=0, description="Open event streams per API process, all keys together."
    )
    max_streams_per_key: int = Field(
        default=10, gt=0, description="Open event streams per API process for one key."
    )
    statement_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description="PostgreSQL cancels an API statement that runs longer (0: never). "
        "Workers and migrations are not limited.",
    )
    device: str | None = Field(default=None, description="Worker device: cpu, cuda, cuda:1.")
    threads: int | None = Field(
        default=None, ge=1, description="Torch threads per worker; default shares the cores."
    )
    workers_per_machine: int = Field(
        default=1, ge=1, description="Workers sharing this machine's cores (for `threads`)."
    )
    pack_max: int | None = Field(
        default=None,
        ge=1,
        description="Most compatible jobs a worker trains together as one pack (1 turns "
        "packing off); default sized to the device: 16 on a CPU, from free memory on CUDA "
        "(worker/pack_size.py).",
    )
    log_format: str = Field(default="text", description="text or json.")
    api_threads: int = Field(
        default=16,
        ge=1,
        description="Threads per API process for blocking work (each holds at most one "
        "database connection: with `api_read_threads`, no more than the pool keeps open).",
    )
    api_read_threads: int = Field(
        default=1,
        ge=1,
        description="Threads per API process for the polled reads (a job, its History), "
        "apart from `api_threads`: few, so they do not fight the event loop for the GIL "
        "(raise it when the database is across a network and reads mostly wait).",
    )
    api_processes: int = Field(
        default=1, ge=1, description="uvicorn worker processes of `fitq api` (one per core)."
    )

    _no_placeholder_secrets = model_validator(mode="after")(deploy_checks.refuse_placeholders)

    @model_validator(mode="after")
    def _threads_fit_the_pool(self) -> Settings:
        if self.api_threads + self.api_read_threads > POOL_SIZE:
            raise ValueError(
                f"FITQ_API_THREADS + FITQ_API_READ_THREADS must be at most {POOL_SIZE}, the "
                "database connections an API process keeps (each thread holds one)"
            )
        return self

    @property
    def home_path(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_path / 'fitq.db'}"

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return (self.home_path / "store").as_uri()

    @property
    def local_key_file(self) -> Path:
        """Where `fitq up` leaves the key it created, for the CLI to pick up."""
        return self.home_path / "api_key"

    def torch_threads(self) -> int:
        """Threads for one worker: the usable cores shared among the machine's
        workers, one core left to the API when there is more than one."""
        if self.threads:
            return self.threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        cores = cores or 1
        api_share = 1 if cores > 1 else 0
        return max(1, (cores - api_share) // self.workers_per_machine)


@lru_cache
def get_settings() -> Settings:
    return Settings()
