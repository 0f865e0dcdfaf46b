"""fitq's tables. The database states its own rules: CHECK constraints on
status values and ranges, timezone-aware timestamps, and a naming convention
so Alembic migrations stay stable across SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Job states. Who enters each, and who leaves it:
QUEUED = "queued"  # entered on enqueue (submit) or requeue (hand-back); left by claim or cancel
RUNNING = (
    "running"  # entered by claim; left by finish/fail/cancel/requeue, or rescue on lease expiry
)
SUCCEEDED = "succeeded"  # terminal; entered by the worker holding the current attempt
FAILED = "failed"  # terminal; entered by the worker, or by the reaper after max_attempts
CANCELLED = "cancelled"  # terminal; entered by cancel (queued) or the worker (running)
JOB_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL_STATUSES = (SUCCEEDED, FAILED, CANCELLED)

# What a running job is doing; written by its worker (queue.record_phase), in order:
LOADING_DATA = "loading_data"  # reading the datasets from the store
TRAINING = "training"  # the fit loop (epochs and steps)
EVALUATING = "evaluating"  # the test dataset, after the last epoch
SAVING = "saving"  # writing the trained model to the store
JOB_PHASES = (LOADING_DATA, TRAINING, EVALUATING, SAVING)

# What a job event reports (JobEvent.kind):
EVENT_STATUS = "status"  # a status change: {"status", "attempt", and "error" when failed}
EVENT_PHASE = "phase"  # a phase change of the running attempt: {"phase", "attempt"}
EVENT_EPOCH = "epoch"  # a finished epoch: its History row (Keras names, seconds, …)
EVENT_KINDS = (EVENT_STATUS, EVENT_PHASE, EVENT_EPOCH)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ApiKey(Base):
    """An API key; only its SHA-256 is stored. Datasets and jobs belong to one."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Dataset(Base):
    """An uploaded dataset: its description plus where its canonical arrays live."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str | None] = mapped_column(String(500), nullable=True)  # metadata only
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    n_rows: Mapped[int] = mapped_column(BigInteger)
    n_features: Mapped[int] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    n_classes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_dim: Mapped[int] = mapped_column(Integer, default=1)
    classes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    class_counts: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    feature_names: Mapped[list[str]] = mapped_column(JSON)
    storage_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (
        CheckConstraint("kind IN ('classification', 'regression')", name="kind"),
        CheckConstraint("n_rows > 0 AND n_features > 0", name="nonempty"),
    )


class Job(Base):
    """A training job and its live state. Status is written only by service/queue/."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset_id: Mapped[str] = mapped_column(String(64), index=True)
    validation_dataset_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    test_dataset_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    epoch: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    test_metrics: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    checkpoint_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    model_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    phase: Mapped[str | None] = mapped_column(String(16), nullable=True)

    # Packing: jobs with the same pack_key (computed at submit from the structure,
    # loss, optimizer and batch size; null = never packed) may train together.
    pack_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pack_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The pack it trains in (or last trained in); written by its worker at claim and join."""
    pack_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sweep_id: Mapped[str | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), nullable=True, index=True
    )
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    """The job's tags as given (order kept); ``job_tags`` holds them again, one row
    each, for filtering: setting ``tags`` sets ``tag_rows`` (:meth:`_tag_rows`)."""
    tag_rows: Mapped[list[JobTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
        ),
        CheckConstraint("attempt >= 0 AND max_attempts >= 1", name="attempts"),
        CheckConstraint(
            "status != 'running' OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name="running_has_lease",
        ),
        CheckConstraint(
            "phase IS NULL OR phase IN ('loading_data', 'training', 'evaluating', 'saving')",
            name="phase",
        ),
        UniqueConstraint("owner_id", "idempotency_key", name="idempotency"),
        CheckConstraint("pack_size IS NULL OR pack_size >= 1", name="pack_size"),
        Index("ix_jobs_claim", "status", "priority", "created_at"),
        Index("ix_jobs_pack_claim", "pack_key", "status", "priority", "created_at"),
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
    )

    @validates("tags")
    def _tag_rows(self, _key: str, tags: list[str] | None) -> list[str]:
        """The ``job_tags`` rows follow the tags, inserted (or replaced) with the job."""
        tags = list(dict.fromkeys(tags or []))
        self.tag_rows = [JobTag(tag=tag) for tag in tags]
        return tags


class JobTag(Base):
    """One tag of a job: what ``GET /v1/jobs?tag=`` filters on, exactly and by
    index on SQLite and PostgreSQL alike (a JSON column cannot be, portably)."""

    __tablename__ = "job_tags"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_job_tags_tag_job_id", "tag", "job_id"),)


class JobEpoch(Base):
    """One epoch's History row, written once, fenced by the attempt that ran it."""

    __tablename__ = "job_epochs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON)
    seconds: Mapped[float] = mapped_column(Float)
    samples_per_second: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (CheckConstraint("epoch >= 1", name="epoch_positive"),)


class ExecutionLog(Base):
    """What each worker actually ran, per (job, attempt, epoch), unfenced, so
    that a double run is visible even when its metrics write was refused."""

    __tablename__ = "execution_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobEvent(Base):
    """Something a watcher of a job wants to know, written in the transaction
    of the change it reports (service/queue/). The id orders a job's events
    (its writers hold the job's row lock) and is the Server-Sent Events id a
    client resumes from."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('status', 'phase', 'epoch')", name="kind"),
        Index("ix_job_events_job_id_id", "job_id", "id"),
    )


class Sweep(Base):
    """Many variants of one job spec (its trials are ordinary jobs), ranked by a
    metric. Its status is derived from its trials' statuses when read."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The request as submitted (base spec, method, parameters, early_terminate)."""
    metric: Mapped[str] = mapped_column(String(100))
    goal: Mapped[str] = mapped_column(String(8))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    """The sweep's own tags; each of its trials has them too (after its spec's)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (CheckConstraint("goal IN ('minimize', 'maximize')", name="goal"),)


class SweepTrial(Base):
    """A sweep's job, with the parameter values that made it and its ranking value
    (the best epoch value of the sweep's metric, updated as epochs are recorded)."""

    __tablename__ = "sweep_trials"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    """The trial's place in the sweep's expansion (0-based), a stable tie-break."""
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    pruned: Mapped[bool] = mapped_column(Boolean, default=False)
    """Stopped by early termination (ASHA); the job itself ended succeeded."""
