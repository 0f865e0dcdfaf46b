"""The API's response bodies (and the predict request), so that the OpenAPI
document says exactly what a client gets; :func:`json_response` sends one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

DB_INT_MAX = 2**31 - 1
"""The largest epoch or event id a column holds (PostgreSQL ``INTEGER``): a
larger ``?after=`` or ``Last-Event-ID`` can match nothing, and PostgreSQL
refuses to compare with it, so the API refuses it first (422)."""


class Error(BaseModel):
    """Every error but FastAPI's own request validation (422 with a list)."""

    detail: str = Field(description="What went wrong, for a person.")
    loc: list[str | int] | None = Field(
        default=None, description="The part of the request to blame, when one is."
    )


class ValidationErrors(BaseModel):
    """FastAPI's own 422: a list of errors, each with its ``loc``, ``msg`` and ``type``."""

    detail: list[dict[str, Any]]


# -- datasets -------------------------------------------------------------------


class ClassificationTask(BaseModel):
    kind: Literal["classification"] = "classification"
    classes: list[str] = Field(description="Label i is classes[i].")
    counts: list[int] = Field(description="Rows per class, in the order of classes.")


class RegressionTask(BaseModel):
    kind: Literal["regression"] = "regression"
    target_dim: int = Field(default=1, description="Target columns (1 for one value per row).")


Task = Annotated[ClassificationTask | RegressionTask, Field(discriminator="kind")]


class DatasetPublic(BaseModel):
    id: str
    name: str
    builtin: bool = Field(description="A built-in dataset: readable by every key, not deletable.")
    format: str = Field(description="csv, tsv, parquet, npz, or builtin.")
    filename: str | None = Field(description="The client's file name, kept as metadata only.")
    sha256: str | None = Field(description="Of the uploaded bytes (null for built-ins).")
    size_bytes: int | None
    n_rows: int
    n_features: int
    label: str | None = Field(description="The target column (null for NPZ).")
    task: Task
    created_at: datetime | None


# -- jobs -----------------------------------------------------------------------


class Progress(BaseModel):
    epoch: int = Field(description="The epoch in progress, or the last one finished.")
    epochs: int
    step: int = Field(description="Batches done in the current epoch.")
    steps: int | None = Field(description="Batches per epoch (null until the job starts).")


JobPhase = Literal["loading_data", "training", "evaluating", "saving"]


class StatusChange(BaseModel):
    """One entry of a job's status history."""

    model_config = ConfigDict(extra="allow")

    status: JobStatus
    attempt: int = Field(description="The attempt it concerns (0 before the first claim).")
    at: datetime
    error: str | None = None


class PackPublic(BaseModel):
    """The pack a job trains (or trained) in: jobs trained together as one computation."""

    id: str
    size: int = Field(description="Jobs in the pack (at least 2).")


class JobPublic(BaseModel):
    id: str
    name: str | None
    status: JobStatus
    priority: int
    attempt: int
    max_attempts: int
    cancel_requested: bool
    progress: Progress
    phase: JobPhase | None = Field(
        default=None, description="What the running attempt is doing (null unless running)."
    )
    eta_seconds: float | None = Field(
        default=None,
        description="Seconds left at the mean measured epoch time (null until an epoch ends).",
    )
    status_history: list[StatusChange] = Field(
        default_factory=list, description="Every status change, oldest first."
    )
    metrics: dict[str, float] | None = Field(description="The latest finished epoch's History.")
    test_metrics: dict[str, float] | None
    error: str | None
    worker_id: str | None
    device: str | None
    dataset_id: str
    validation_dataset_id: str | None
    test_dataset_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    sweep_id: str | None = Field(default=None, description="The sweep it is a trial of.")
    tags: list[str] = Field(
        default_factory=list, description="Its tags, as given at submit (GET /v1/jobs?tag=)."
    )
    pack: PackPublic | None = Field(
        default=None, description="The pack it trains in, when it trains with others."
    )
    spec: dict[str, Any] = Field(description="The normalized spec, every default filled in.")


class EpochMetrics(BaseModel):
    """One epoch of the Keras History: ``loss``, ``accuracy``, ``val_*``, … as trained."""

    model_config = ConfigDict(extra="allow")

    epoch: int
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    seconds: float
    samples_per_second: float


class History(BaseModel):
    epochs: list[EpochMetrics]


# -- sweeps ---------------------------------------------------------------------

SweepStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class SweepMetric(BaseModel):
    name: str = Field(description="A History name: loss, accuracy, val_loss, …")
    goal: Literal["minimize", "maximize"]


class TrialCounts(BaseModel):
    """A sweep's trials by status."""

    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class BestTrial(BaseModel):
    job_id: str
    params: dict[str, Any]
    value: float


class SweepPublic(BaseModel):
    id: str
    name: str | None
    status: SweepStatus = Field(
        description="queued until a trial starts; succeeded once every trial ended and one "
        "succeeded; failed (none succeeded) or cancelled (a trial was cancelled, none succeeded)."
    )
    metric: SweepMetric
    trials: TrialCounts
    best: BestTrial | None = Field(
        description="The best succeeded trial by its value (null until one succeeded)."
    )
    method: Literal["grid", "random"]
    parameters: dict[str, Any] = Field(description="The parameters as submitted.")
    early_terminate: dict[str, Any] | None
    tags: list[str] = Field(
        default_factory=list, description="The sweep's tags (each trial has them too)."
    )
    created_at: datetime
    finished_at: datetime | None = Field(description="When the last trial ended.")


class TrialPublic(BaseModel):
    job_id: str
    number: int = Field(description="The trial's place in the sweep's expansion (0-based).")
    params: dict[str, Any]
    status: JobStatus
    value: float | None = Field(
        description="The best epoch value of the sweep's metric so far (null before one)."
    )
    epochs: int = Field(description="Epochs finished.")
    pruned: bool = Field(description="Stopped early at a rung by ASHA (the job succeeded).")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[list[float]] = Field(description="Rows of features, n_features values each.")


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(description="A built-in's name or one of your datasets' ids.")


class Evaluation(BaseModel):
    metrics: dict[str, float] = Field(
        description="Keras' evaluate: the loss (regularization included) and each compiled "
        "metric, by its History name."
    )


class Prediction(BaseModel):
    predictions: list[Any] = Field(
        description="A class index per row (classification) or a value per row (regression)."
    )
    probabilities: list[list[float]] | None = Field(
        default=None, description="Per row, a probability per class (classification only)."
    )


class Health(BaseModel):
    status: str


def json_response(
    body: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as JSON, serialized once by pydantic. Every route returns its
    ``Response`` so: FastAPI would validate a returned model against the
    ``response_model`` again, on a thread of the pool, before the session
    dependency's commit (see ``deps.get_session``)."""
    return Response(
        body.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )
