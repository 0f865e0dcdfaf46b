"""Submitting a job: validate the body fully, check it against its datasets,
the operator's bounds (:class:`Bounds`: the memory it needs to train, its run
time, priority and attempts) and the owner's queued-jobs quota, and queue it
(``queue.enqueue``). A sweep's trials go through the same steps
(:func:`validate`, :func:`check_queue_quota`, :func:`new_job`), so a trial is
refused exactly where a job would be.

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
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fitq.service import queue
from fitq.service import spec as specs
from fitq.service.datasets import service as datasets
from fitq.service.datasets.shape import DataShape
from fitq.service.db.models import QUEUED, ApiKey, Dataset, Job, utcnow
from fitq.service.errors import Conflict, InvalidSpec, NotFound, TooManyRequests
from fitq.service.jobs import budget
from fitq.service.settings import Settings
from fitq.worker.engine.pack.compat import compatibility_key

log = logging.getLogger("fitq.jobs")

DATASET_FIELDS = ("dataset_id", "validation_dataset_id", "test_dataset_id")
QUEUE_FULL_RETRY_AFTER_SECONDS = 10
"""``Retry-After`` of a submission refused by the queued-jobs quota (seconds)."""


@dataclass(frozen=True)
class Bounds:
    """What an operator bounds in a job beyond the spec's own rules, each a
    setting (docs/api.md, Limits); a spec over one is a 422 naming it."""

    max_training_bytes: int
    max_job_seconds: int
    max_priority: int
    max_attempts: int

    @classmethod
    def of(cls, settings: Settings) -> Bounds:
        return cls(
            max_training_bytes=settings.max_training_bytes,
            max_job_seconds=settings.max_job_seconds,
            max_priority=settings.max_priority,
            max_attempts=settings.max_attempts,
        )


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
    bounds: Bounds | None = None,
) -> tuple[Job, bool]:
    """Validate ``body`` fully and queue it; return ``(job, created)``.

    ``max_epochs``, ``max_parameters`` and ``bounds`` bound the spec (422);
    ``max_queued_jobs`` bounds the owner's queued jobs (429 with
    ``Retry-After``); None: no service limit.
    """
    digest = request_hash(body)
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, owner_id, idempotency_key)
        if existing is not None:
            return _replay(existing, idempotency_key, digest), False

    limits = spec_limits(max_epochs, max_parameters)
    spec, normalized = checked(session, owner_id, body, limits=limits, bounds=bounds)
    if max_queued_jobs is not None:
        check_queue_quota(session, owner_id, max_queued_jobs)
    job = new_job(
        owner_id, normalized, tags=spec.tags, idempotency_key=idempotency_key, request_hash=digest
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


def spec_limits(
    max_epochs: int | None = None, max_parameters: int | None = None
) -> specs.SpecLimits:
    """The spec's limits with the service's bounds (None: the spec's default)."""
    given = {"max_epochs": max_epochs, "max_parameters": max_parameters}
    return replace(specs.DEFAULT_LIMITS, **{k: v for k, v in given.items() if v is not None})


def validate(
    session: Session,
    owner_id: str,
    body: Any,
    *,
    limits: specs.SpecLimits,
    bounds: Bounds | None = None,
) -> dict[str, Any]:
    """What makes ``body`` a job, or the 422/404 that says why not: the spec
    parsed and normalized, then checked against the shapes of its datasets
    (each resolved through the owner check) and the operator's ``bounds``
    (None: none). Every job is checked by this, a sweep's trials included;
    returns the normalized spec."""
    return checked(session, owner_id, body, limits=limits, bounds=bounds)[1]


def checked(
    session: Session,
    owner_id: str,
    body: Any,
    *,
    limits: specs.SpecLimits,
    bounds: Bounds | None = None,
) -> tuple[specs.JobSpec, dict[str, Any]]:
    """:func:`validate`, returning the parsed spec too (its ``tags``, which the
    normalized spec leaves out)."""
    spec = specs.parse_spec(body, limits=limits)
    normalized: dict[str, Any] = spec.model_dump(mode="json")
    shapes = _dataset_shapes(session, owner_id, normalized)
    specs.check_against_data(
        spec,
        shapes["dataset_id"],  # type: ignore[arg-type]
        validation=shapes["validation_dataset_id"],
        test=shapes["test_dataset_id"],
    )
    if bounds is not None:
        check_bounds(spec, normalized, shapes, bounds)
    return spec, normalized


def check_bounds(
    spec: specs.JobSpec,
    normalized: dict[str, Any],
    shapes: dict[str, DataShape | None],
    bounds: Bounds,
) -> None:
    """422 for a priority, attempts or run time over the operator's bound, or
    a model whose estimated training memory is over ``FITQ_MAX_TRAINING_BYTES``."""
    asked = (
        ("priority", spec.priority, bounds.max_priority, "FITQ_MAX_PRIORITY"),
        ("max_attempts", spec.max_attempts, bounds.max_attempts, "FITQ_MAX_ATTEMPTS"),
        ("max_seconds", spec.max_seconds, bounds.max_job_seconds, "FITQ_MAX_JOB_SECONDS"),
    )
    for field, value, limit, setting in asked:
        if value is not None and value > limit:
            raise InvalidSpec(
                f"{field} must be ≤ {limit}, the service's limit {setting} (got {value})",
                loc=["body", field],
            )
    train = shapes["dataset_id"]
    assert train is not None  # validated: a job names its training dataset
    estimated = budget.estimate(
        normalized,
        spec.model.parameter_count(),
        train,
        validation=shapes["validation_dataset_id"],
        test=shapes["test_dataset_id"],
    )
    budget.check(estimated, bounds.max_training_bytes, model_key=spec.field_loc("model"))


def new_job(
    owner_id: str,
    normalized: dict[str, Any],
    *,
    name: str | None = None,
    tags: list[str] | None = None,
    sweep_id: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Job:
    """The row of a job to queue (``queue.enqueue``) from its normalized spec;
    ``name`` when given stands for the spec's (a sweep names its trials).
    ``tags`` (valid: ``JobSpec.tags``) go on the row and, one row each, in
    ``job_tags``, inserted with it (``Job.tags``)."""
    now = utcnow()
    return Job(
        owner_id=owner_id,
        name=name or normalized.get("name"),
        priority=int(normalized.get("priority") or 0),
        spec=normalized,
        dataset_id=normalized["dataset_id"],
        validation_dataset_id=normalized.get("validation_dataset_id"),
        test_dataset_id=normalized.get("test_dataset_id"),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        epochs=int(normalized["fit"]["epochs"]),
        max_attempts=int(normalized.get("max_attempts") or 3),
        sweep_id=sweep_id,
        tags=list(tags or []),
        pack_key=compatibility_key(normalized),  # None: it trains solo
        created_at=now,
        updated_at=now,
    )


def check_queue_quota(session: Session, owner_id: str, limit: int, *, adding: int = 1) -> None:
    """429 when ``adding`` more queued jobs would put the owner over ``limit``.
    The owner's key row is locked first (PostgreSQL; SQLite's writers are
    serialized anyway), so concurrent submissions of one key count one after
    the other."""
    session.execute(select(ApiKey.id).where(ApiKey.id == owner_id).with_for_update())
    queued = (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.owner_id == owner_id, Job.status == QUEUED)
        )
        or 0
    )
    if queued + adding > limit:
        more = "" if adding == 1 else f"; {adding} more would pass it"
        raise TooManyRequests(
            f"this key has {queued} jobs queued, the limit of {limit} "
            f"(FITQ_MAX_QUEUED_JOBS_PER_KEY){more}; submit again when one has started, "
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
