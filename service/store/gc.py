"""The store's collector: it deletes what no row needs, and says what it deleted.

What is garbage (each older than the grace period, ``FITQ_GC_GRACE_SECONDS``):

- ``datasets/<prefix>/…`` that no dataset row names (its last row was deleted
  and the files stayed: a crash, or a delete racing an upload);
- ``jobs/<job>/checkpoints/…`` of a job that ended (succeeded, failed,
  cancelled): a terminal state is final, nothing resumes from them. The worker
  drops them itself when a job succeeds or is cancelled; a failed job's and a
  reaped job's stay until the collector runs;
- ``jobs/<job>/model-a<n>.safetensors`` of an ended job other than the one its
  row names (a superseded attempt's late model, or one whose attempt died
  before it finished the job);
- everything under ``jobs/<job>/`` when the job has no row (it was deleted);
- ``.tmp-*.part``: a local write that a crash interrupted (in a job's folder,
  once the job ended or went).

A running or queued job's files are never touched, nor anything outside
``datasets/`` and ``jobs/``.

Order, and why it is safe beside the API and the workers:

1. The store is listed first, the rows read after. A job's files are written
   only after its row was committed (a worker claims it first), and job ids
   are never reused, so a job missing from rows read after the listing was
   deleted; a terminal job stays terminal.
2. A dataset prefix is deleted in a transaction that holds its lock
   (``store/locks.py``) and finds no row naming it: an upload that found the
   files stored commits its row under the same lock, or sees them gone and
   writes them again. ``meta.json`` goes first, so a prefix half deleted by
   a crash is never taken for a complete one.
3. Nothing younger than the grace period is collected: a write in progress
   (a checkpoint being renamed into place, a model a slow attempt is still
   uploading) is left to a later run.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from fitq.service.db.engine import transaction
from fitq.service.db.models import TERMINAL_STATUSES, Dataset, Job, utcnow
from fitq.service.store import keys, locks
from fitq.service.store.artifacts import TEMP_PREFIX, TEMP_SUFFIX, ArtifactStore, StoredObject

log = logging.getLogger("fitq.store.gc")

DEFAULT_GRACE_SECONDS = 3600
"""Objects younger than this are left alone (``FITQ_GC_GRACE_SECONDS``)."""
IN_CHUNK = 500
"""Ids per ``IN (…)`` when rows are looked up for a listing."""

# Why an object is garbage (Garbage.reason):
DATASET = "dataset files no row names"
CHECKPOINT = "checkpoint of an ended job"
MODEL = "model its job's row does not name"
DELETED_JOB = "file of a deleted job"
TEMP = "leftover of an interrupted write"


@dataclass(frozen=True)
class Garbage:
    """What the collector deletes: an object, or a dataset prefix as a whole."""

    key: str
    bytes: int
    objects: int
    reason: str


@dataclass
class Report:
    """What one run found (and, unless ``dry_run``, deleted)."""

    dry_run: bool
    grace_seconds: float
    items: list[Garbage] = field(default_factory=list)
    young: int = 0
    """Garbage left for a later run: younger than the grace period."""
    failed: list[str] = field(default_factory=list)
    """Keys whose delete raised (logged; a later run tries again)."""

    @property
    def objects(self) -> int:
        return sum(g.objects for g in self.items)

    @property
    def bytes(self) -> int:
        return sum(g.bytes for g in self.items)


def collect(
    url: str,
    store: ArtifactStore,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    now: Callable[[], datetime] = utcnow,
) -> Report:
    """Find the garbage of ``store`` against the database at ``url`` and, unless
    ``dry_run``, delete it. ``now`` is the clock the grace period counts from."""
    listed = store.objects()  # first: see the module docstring
    cutoff = now() - timedelta(seconds=grace_seconds)
    report = Report(dry_run=dry_run, grace_seconds=grace_seconds)
    with transaction(url) as session:
        found = _garbage(session, listed)
    for item, newest in found:
        if newest >= cutoff:
            report.young += item.objects
        else:
            report.items.append(item)
    if not dry_run:
        report.items = [g for g in report.items if _delete(url, store, g, report)]
    log.info(
        "store collected",
        extra={
            "action": "gc",
            "dry_run": dry_run,
            "objects": report.objects,
            "bytes": report.bytes,
            "young": report.young,
            "failed": len(report.failed),
        },
    )
    return report


def _garbage(session: Session, listed: Sequence[StoredObject]) -> list[tuple[Garbage, datetime]]:
    """Each piece of garbage in ``listed``, with the time of its newest object."""
    found: list[tuple[Garbage, datetime]] = []
    prefixes: dict[str, list[StoredObject]] = defaultdict(list)
    job_files: dict[str, list[StoredObject]] = defaultdict(list)
    for obj in listed:
        parts = obj.key.split("/")
        if parts[0] == keys.JOBS and len(parts) >= 3:
            job_files[parts[1]].append(obj)
        elif _is_temp(obj.key):
            found.append((Garbage(obj.key, obj.size, 1, TEMP), obj.modified))
        elif parts[0] == keys.DATASETS and len(parts) >= 3:
            prefixes["/".join(parts[:2])].append(obj)
    named = _named_prefixes(session, list(prefixes))
    for prefix, objs in prefixes.items():
        if prefix not in named:
            size = sum(o.size for o in objs)
            found.append((Garbage(prefix, size, len(objs), DATASET), max(o.modified for o in objs)))
    jobs = _jobs(session, list(job_files))
    for job_id, objs in job_files.items():
        for obj in objs:
            reason = _job_file_reason(job_id, obj.key, jobs.get(job_id))
            if reason is not None:
                found.append((Garbage(obj.key, obj.size, 1, reason), obj.modified))
    return found


def _job_file_reason(job_id: str, key: str, job: tuple[str, str | None] | None) -> str | None:
    """Why ``key`` of job ``job_id`` (its row's status and model key) is garbage, or None."""
    if job is None:
        return TEMP if _is_temp(key) else DELETED_JOB
    status, model_key = job
    if status not in TERMINAL_STATUSES:
        return None  # its temporary files too: a write of the attempt that holds it
    if _is_temp(key):
        return TEMP
    if key.startswith(keys.checkpoints(job_id) + "/"):
        return CHECKPOINT
    name = key.rsplit("/", 1)[-1]
    if keys.MODEL_NAME.match(name) and key != model_key and key.count("/") == 2:
        return MODEL
    return None


def _is_temp(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _named_prefixes(session: Session, prefixes: list[str]) -> set[str]:
    """Which of ``prefixes`` a dataset row names."""
    named: set[str] = set()
    for chunk in _chunks(prefixes):
        named.update(
            session.scalars(
                select(Dataset.storage_key).where(Dataset.storage_key.in_(chunk)).distinct()
            )
        )
    return named


def _jobs(session: Session, job_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """Status and model key of each of ``job_ids`` that has a row."""
    rows: dict[str, tuple[str, str | None]] = {}
    for chunk in _chunks(job_ids):
        for job_id, status, model_key in session.execute(
            select(Job.id, Job.status, Job.model_key).where(Job.id.in_(chunk))
        ):
            rows[job_id] = (status, model_key)
    return rows


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def _delete(url: str, store: ArtifactStore, item: Garbage, report: Report) -> bool:
    """Delete ``item``; whether it went (a dataset prefix a row now names stays)."""
    try:
        if item.reason == DATASET:
            with transaction(url) as session:
                return collect_prefix(session, store, item.key)
        store.delete(item.key)
        store.remove_empty_folders(item.key)
    except Exception:
        log.warning("not collected", extra={"action": "gc", "key": item.key}, exc_info=True)
        report.failed.append(item.key)
        return False
    return True


def collect_prefix(session: Session, store: ArtifactStore, prefix: str) -> bool:
    """Delete the dataset files under ``prefix`` if no row names it, holding its
    lock in ``session``'s transaction (the caller commits); whether it did."""
    locks.hold(session, prefix)
    if session.scalar(select(exists().where(Dataset.storage_key == prefix))):
        return False
    store.delete(keys.dataset_meta(prefix))  # first: a prefix without it is incomplete
    store.delete_prefix(prefix)
    return True
