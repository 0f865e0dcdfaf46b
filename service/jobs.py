"""Jobs as the API sees them: submit (with ``Idempotency-Key``), read, list,
epoch history, the trained model and predictions.

Status is never written here: a submission's queued row is written by
``queue.enqueue`` and a cancel by ``queue.request_cancel``; every status
change is in ``service/queue.py``.

Idempotency. The request hash is the sha256 of the body as canonical JSON
(sorted keys, no spaces), taken before any validation. The same key with the
same hash returns the job it created (``created`` is False: the API answers
200 instead of 201); the same key with another hash is a 409. The unique
constraint ``(owner_id, idempotency_key)`` decides races: the insert runs in a
savepoint, and the loser of a race reads the winner's row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fitq.service import paging, queue
from fitq.service import spec as specs
from fitq.service.datasets import service as datasets
from fitq.service.datasets.shape import DataShape
from fitq.service.db.models import (
    EVENT_STATUS,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ApiKey,
    Dataset,
    Job,
    JobEpoch,
    JobEvent,
    utcnow,
)
from fitq.service.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, TooManyRequests
from fitq.service.paging import Page
from fitq.service.store import ArtifactStore

log = logging.getLogger("fitq.jobs")

DATASET_FIELDS = ("dataset_id", "validation_dataset_id", "test_dataset_id")
PREDICTOR_CACHE_SIZE = 8
"""Loaded models kept in memory for predict (per API process)."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest predict input the model's float32 holds."""
QUEUE_FULL_RETRY_AFTER_SECONDS = 10
"""``Retry-After`` of a submission refused by the queued-jobs quota (seconds)."""


# -- submit -------------------------------------------------------------------


def request_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def submit(
    session: Session,
    owner_id: str,
    body: Any,
    *,
    idempotency_key: str | None = None,
    max_epochs: int | None = None,
    max_parameters: int | None = None,
    max_queued_jobs: int | None = None,
) -> tuple[Job, bool]:
    """Validate ``body`` fully and queue it; return ``(job, created)``.

    ``max_epochs`` and ``max_parameters`` bound the spec (422); ``max_queued_jobs``
    bounds the owner's queued jobs (429 with ``Retry-After``); None: no service limit.
    """
    digest = request_hash(body)
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, owner_id, idempotency_key)
        if existing is not None:
            return _replay(existing, idempotency_key, digest), False

    given = {"max_epochs": max_epochs, "max_parameters": max_parameters}
    limits = replace(specs.DEFAULT_LIMITS, **{k: v for k, v in given.items() if v is not None})
    spec = specs.parse_spec(body, limits=limits)
    normalized: dict[str, Any] = spec.model_dump(mode="json")
    shapes = _dataset_shapes(session, owner_id, normalized)
    specs.check_against_data(
        spec,
        shapes["dataset_id"],  # type: ignore[arg-type]
        validation=shapes["validation_dataset_id"],
        test=shapes["test_dataset_id"],
    )
    if max_queued_jobs is not None:
        _check_queue_quota(session, owner_id, max_queued_jobs)
    job = Job(
        owner_id=owner_id,
        name=normalized.get("name"),
        priority=int(normalized.get("priority") or 0),
        spec=normalized,
        dataset_id=normalized["dataset_id"],
        validation_dataset_id=normalized.get("validation_dataset_id"),
        test_dataset_id=normalized.get("test_dataset_id"),
        idempotency_key=idempotency_key,
        request_hash=digest,
        epochs=int(normalized["fit"]["epochs"]),
        max_attempts=int(normalized.get("max_attempts") or 3),
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    if idempotency_key is None:
        queue.enqueue(session, job)
    else:
        try:
            with session.begin_nested():
                queue.enqueue(session, job)
        except IntegrityError:
            # Another request with this key committed first: theirs is the job.
            existing = _by_idempotency_key(session, owner_id, idempotency_key)
            if existing is None:
                raise
            return _replay(existing, idempotency_key, digest), False
    log.info("job submitted", extra={"action": "submit", "job_id": job.id, "owner_id": owner_id})
    return job, True


def _check_queue_quota(session: Session, owner_id: str, limit: int) -> None:
    """429 when the owner already has ``limit`` jobs queued. The owner's key row
    is locked first (PostgreSQL; SQLite's writers are serialized anyway), so
    concurrent submissions of one key count one after the other."""
    session.execute(select(ApiKey.id).where(ApiKey.id == owner_id).with_for_update())
    queued = session.scalar(
        select(func.count()).select_from(Job).where(Job.owner_id == owner_id, Job.status == QUEUED)
    )
    if (queued or 0) >= limit:
        raise TooManyRequests(
            f"this key has {queued} jobs queued, the limit of {limit} "
            "(FITQ_MAX_QUEUED_JOBS_PER_KEY); submit again when one has started, "
            "or cancel one",
            retry_after_seconds=QUEUE_FULL_RETRY_AFTER_SECONDS,
        )


def _by_idempotency_key(session: Session, owner_id: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == key))


def _replay(job: Job, key: str, digest: str) -> Job:
    if job.request_hash != digest:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used with a different body (job {job.id}); "
            "use a new key for a new job"
        )
    return job


def _dataset_shapes(
    session: Session, owner_id: str, normalized: dict[str, Any]
) -> dict[str, DataShape | None]:
    """Each dataset id of the spec resolved through the owner check (404
    naming the field), the rows held ``FOR SHARE`` against a concurrent delete."""
    shapes: dict[str, DataShape | None] = {}
    for field in DATASET_FIELDS:
        dataset_id = normalized.get(field)
        if dataset_id is None:
            shapes[field] = None
            continue
        loc = ["body", field]
        if dataset_id in datasets.builtin_ids():
            shapes[field] = datasets.shape_of(datasets.builtin_row(dataset_id))
            continue
        row = session.scalar(
            select(Dataset).where(Dataset.id == dataset_id).with_for_update(read=True)
        )
        if row is None or row.owner_id != owner_id:
            raise NotFound(f"{field}: no dataset with id {dataset_id!r}", loc=loc)
        shapes[field] = datasets.shape_of(row)
    return shapes


# -- read ---------------------------------------------------------------------


def get(session: Session, owner_id: str, job_id: str) -> Job:
    """The job ``job_id`` of ``owner_id``; another owner's job is "not found", word for word."""
    job = session.get(Job, job_id)
    if job is None or job.owner_id != owner_id:
        raise not_found(job_id)
    return job


def not_found(job_id: str) -> NotFound:
    return NotFound(f"no job with id {job_id!r}")


def list_page(
    session: Session, owner_id: str, *, status: str | None, cursor: str | None, limit: int
) -> Page[Job]:
    """The owner's jobs, newest first (``paging.newest_first``; the cursor ``{"j": keyset}``)."""
    query = select(Job).where(Job.owner_id == owner_id)
    if status is not None:
        query = query.where(Job.status == status)
    after = _decode_cursor(cursor) if cursor else None
    rows, more = paging.newest_first(session, query, Job, after, limit)
    next_cursor = paging.encode_cursor({"j": paging.keyset_of(rows[-1])}) if more else None
    return Page(items=rows, next_cursor=next_cursor)


def _decode_cursor(cursor: str) -> paging.Keyset:
    data = paging.decode_cursor(cursor)
    if not isinstance(data, dict) or "j" not in data:
        raise paging.bad_cursor()
    return paging.parse_keyset(data["j"])


# -- live state: status history and ETA ------------------------------------------


@dataclass(frozen=True)
class Live:
    """What the job resource shows beyond the job row: the status history
    (from its events) and an ETA (from its measured epoch times)."""

    status_history: list[dict[str, Any]]
    eta_seconds: float | None


def live(session: Session, rows: list[Job]) -> dict[str, Live]:
    """The live state of each job in ``rows``, by job id (two queries in all)."""
    ids = [job.id for job in rows]
    if not ids:
        return {}
    histories: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in ids}
    for event in session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id.in_(ids), JobEvent.kind == EVENT_STATUS)
        .order_by(JobEvent.id)
    ):
        histories[event.job_id].append(status_change(event.data, event.created_at))
    timing = {
        job_id: (float(mean), int(last))
        for job_id, mean, last in session.execute(
            select(JobEpoch.job_id, func.avg(JobEpoch.seconds), func.max(JobEpoch.epoch))
            .where(JobEpoch.job_id.in_(ids))
            .group_by(JobEpoch.job_id)
        )
    }
    return {
        job.id: Live(histories[job.id], eta_seconds(job, *timing.get(job.id, (None, 0))))
        for job in rows
    }


def status_change(data: dict[str, Any], at: datetime) -> dict[str, Any]:
    """One entry of the status history, from a status event's data and time."""
    return {**data, "at": at}


def eta_seconds(job: Job, mean_epoch_seconds: float | None, epochs_done: int) -> float | None:
    """Seconds until the last epoch ends, at the mean measured epoch time: the
    epochs not started plus what is left of the one in progress. None unless
    the job runs and an epoch has finished (early stopping may end it sooner)."""
    if job.status != RUNNING or mean_epoch_seconds is None:
        return None
    remaining = float(max(job.epochs - epochs_done, 0))
    if remaining and job.epoch == epochs_done + 1 and job.steps:
        remaining -= min(job.step / job.steps, 1.0)
    return round(remaining * mean_epoch_seconds, 1)


# -- cancel -------------------------------------------------------------------


def cancel(session: Session, job: Job) -> Job:
    """Ask for a cancel (idempotent; a terminal job stays as it is) and return the job now."""
    queue.request_cancel(session, job.id)
    session.flush()
    session.refresh(job)
    return job


# -- the trained model ----------------------------------------------------------


def _require_succeeded(job: Job) -> str:
    if job.status != SUCCEEDED or not job.model_key:
        raise Conflict(f"job {job.id} has no trained model: it is {job.status}")
    return job.model_key


def model_bytes(store: ArtifactStore, job: Job) -> bytes:
    """The safetensors file of a succeeded job (409 before it succeeded)."""
    key = _require_succeeded(job)
    try:
        return store.get_bytes(key)
    except FileNotFoundError:
        raise Conflict(f"job {job.id}'s model file is missing from the store") from None


class _PredictorCache:
    """A small LRU of loaded models by (job id, model key); thread-safe."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], load: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


_predictors = _PredictorCache(PREDICTOR_CACHE_SIZE)


def predict(
    store: ArtifactStore, job: Job, inputs: list[list[float]], *, max_rows: int
) -> dict[str, Any]:
    """Apply a succeeded job's model to ``inputs``: class indices and
    probabilities for classification, values for regression."""
    key = _require_succeeded(job)
    spec = job.spec
    n_features = int(spec["model"]["input_dim"])
    x = _input_matrix(inputs, n_features, max_rows)

    def load() -> Any:
        from fitq.worker.engine import load_predictor  # torch only when a prediction is asked

        return load_predictor(spec["model"], model_bytes(store, job), device="cpu")

    predictor = _predictors.get((job.id, key), load)
    out = np.asarray(predictor.predict(x), dtype=np.float64)
    if out.ndim == 1:
        out = out[:, None]
    overflowed = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if overflowed.size:
        i = int(overflowed[0])
        raise InvalidInput(
            f"inputs[{i}] is too large for this model: its outputs overflow float32",
            loc=["body", "inputs", i],
        )
    return _interpret(out, spec["compile"]["loss"])


def _input_matrix(inputs: list[list[float]], n_features: int, max_rows: int) -> np.ndarray:
    if len(inputs) > max_rows:
        raise PayloadTooLarge(
            f"inputs has {len(inputs)} rows, over the limit of {max_rows} per call "
            "(FITQ_MAX_PREDICT_ROWS)"
        )
    if not inputs:
        raise InvalidInput("inputs is empty: give at least one row", loc=["body", "inputs"])
    for i, row in enumerate(inputs):
        if len(row) != n_features:
            raise InvalidInput(
                f"inputs[{i}] has {len(row)} values; the model takes {n_features} features",
                loc=["body", "inputs", i],
            )
        for j, value in enumerate(row):
            if not math.isfinite(value):
                raise InvalidInput(
                    f"inputs[{i}][{j}] is {value}; every input must be a finite number",
                    loc=["body", "inputs", i, j],
                )
            if abs(value) > FLOAT32_MAX:
                raise InvalidInput(
                    f"inputs[{i}][{j}] is {value}; past ±{FLOAT32_MAX:.4g}, the float32 the "
                    "model computes in cannot hold it",
                    loc=["body", "inputs", i, j],
                )
    return np.asarray(inputs, dtype=np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _interpret(out: np.ndarray, loss: dict[str, Any]) -> dict[str, Any]:
    """Model outputs → the predict response, by the loss the model was trained with.

    - categorical losses: probabilities (softmax of logits when ``from_logits``),
      predictions = argmax;
    - binary cross-entropy, one unit: p = P(class 1) (sigmoid of the logit when
      ``from_logits``), predictions = ``p >= 0.5``, probabilities ``[1 - p, p]``;
      several units (multi-label): a 0/1 list and a probability per unit;
    - anything else is regression: values (a number per row for one output).
    """
    name = loss.get("name", "")
    logits = bool(loss.get("from_logits", False))
    if name in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        probs = _softmax(out) if logits else out
        return {
            "predictions": probs.argmax(axis=1).tolist(),
            "probabilities": probs.tolist(),
        }
    if name == "binary_crossentropy":
        p = _sigmoid(out) if logits else out
        if p.shape[1] == 1:
            p1 = p[:, 0]
            return {
                "predictions": (p1 >= 0.5).astype(int).tolist(),
                "probabilities": np.stack([1.0 - p1, p1], axis=1).tolist(),
            }
        return {"predictions": (p >= 0.5).astype(int).tolist(), "probabilities": p.tolist()}
    values = out[:, 0] if out.shape[1] == 1 else out
    return {"predictions": values.tolist(), "probabilities": None}
