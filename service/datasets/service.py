"""Datasets as the API sees them: an upload becomes canonical arrays in the
store plus a ``Dataset`` row; reads (the public shape: :func:`public`), the
list, delete; and the built-ins.

Storage policy. The canonical arrays live under ``store.keys.dataset``
(``datasets/<sha256 of the uploaded bytes>``, with a suffix when ``label`` or
``task`` was given). The same bytes uploaded twice — by one key or two — are
ingested and stored once; each upload still gets its own ``Dataset`` row, owned
by its uploader (so a key never learns another's ids, and deleting one row
never takes data from the other). The files go when the last row that points
at them is deleted.

Built-in datasets (``digits``, ``iris``, …) have no row: their id is their
name, every key can read them, and none can delete them (409).

Quota. What a key's datasets take in the store (:func:`stored_bytes`: each
row's canonical arrays, counted per row even where two rows share files) is
bounded by ``FITQ_MAX_STORED_BYTES_PER_KEY``; an upload that would pass it is a
413 naming the usage and the limit, checked after ingest (the size is the
decoded one) and before the row is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import case, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from fitq.service import paging
from fitq.service.api.schemas import ClassificationTask, DatasetPublic, RegressionTask
from fitq.service.datasets import builtin, ingest
from fitq.service.datasets.formats import client_name
from fitq.service.datasets.limits import Limits
from fitq.service.datasets.shape import DataShape, TaskKind
from fitq.service.db.engine import after_commit
from fitq.service.db.models import TERMINAL_STATUSES, ApiKey, Dataset, Job, utcnow
from fitq.service.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from fitq.service.paging import Page
from fitq.service.store import ArtifactStore, gc, keys, locks

log = logging.getLogger("fitq.datasets")

MAX_NAME_CHARS = 200
MAX_FILENAME_CHARS = 500
TASKS: tuple[TaskKind, ...] = ("classification", "regression")


def builtin_ids() -> tuple[str, ...]:
    return tuple(builtin.BUILTINS)


# -- create -------------------------------------------------------------------


@dataclass(frozen=True)
class NewUpload:
    """An upload as received: a local temp file and what the client said about it."""

    path: Path
    filename: str | None  # the client's name: metadata and a format hint, never a path
    sha256: str
    size_bytes: int
    name: str | None = None
    label: str | None = None
    task: str | None = None


def create(
    session: Session,
    store: ArtifactStore,
    owner_id: str,
    upload: NewUpload,
    *,
    limits: Limits,
    max_stored_bytes: int | None = None,
) -> Dataset:
    """Ingest ``upload`` (unless the same bytes and options are already stored)
    and record it as a new dataset of ``owner_id``, within ``max_stored_bytes``
    for all of the owner's datasets (None: no quota).

    CPU-bound: the API calls it in a worker thread. The temp file is the
    caller's to remove.
    """
    label = upload.label or None
    task = _task(upload.task)
    name = _name(upload)
    prefix = keys.dataset(upload.sha256, label=label, task=task)

    def ingested() -> ingest.IngestedDataset:
        return ingest.ingest_file(
            upload.path, filename=upload.filename, label=label, task=task, limits=limits
        )

    ds = None
    meta = _stored_meta(store, prefix)  # a first look, so that ingest runs outside the lock
    if meta is not None:
        facts = _Facts.from_meta(meta)
    else:
        ds = ingested()
        facts = _Facts.from_meta(ds.meta())
    locks.hold(session, prefix)  # until commit: the files cannot go from under the row
    if ds is None and not ingest.is_saved(store, prefix):
        ds = ingested()  # collected since the first look: write them again
    if ds is None:
        log.info("dataset bytes already stored", extra={"action": "dedup", "prefix": prefix})
    if max_stored_bytes is not None:
        check_stored_bytes(session, owner_id, canonical_bytes(facts.shape), max_stored_bytes)
    if ds is not None:
        ingest.save_canonical(ds, store, prefix)
    row = Dataset(
        owner_id=owner_id,
        name=name,
        filename=upload.filename[:MAX_FILENAME_CHARS] if upload.filename else None,
        format=facts.format,
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        n_rows=facts.shape.n_rows,
        n_features=facts.shape.n_features,
        label=facts.label,
        kind=facts.shape.kind,
        n_classes=facts.shape.n_classes,
        target_dim=facts.shape.target_dim,
        classes=facts.classes,
        class_counts=facts.class_counts,
        feature_names=facts.feature_names,
        storage_key=prefix,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    log.info("dataset created", extra={"action": "create", "dataset_id": row.id, "prefix": prefix})
    return row


def _stored_meta(store: ArtifactStore, prefix: str) -> dict[str, Any] | None:
    """The ``meta.json`` of a complete canonical form under ``prefix``, or None."""
    try:
        return ingest.load_meta(store, prefix)
    except FileNotFoundError:
        return None


def canonical_bytes(shape: DataShape) -> int:
    """The bytes of a dataset's canonical arrays: features float32, class labels
    int64, regression targets float32."""
    target = 8 if shape.kind == "classification" else 4 * shape.target_dim
    return shape.n_rows * (shape.n_features * 4 + target)


def stored_bytes(session: Session, owner_id: str) -> int:
    """What ``owner_id``'s datasets take in the store (``canonical_bytes`` of each row)."""
    target = case(
        (Dataset.kind == "classification", 8), else_=4 * func.coalesce(Dataset.target_dim, 1)
    )
    total = func.sum(Dataset.n_rows * (Dataset.n_features * 4 + target))
    usage = session.scalar(select(func.coalesce(total, 0)).where(Dataset.owner_id == owner_id))
    return int(usage or 0)


def check_stored_bytes(session: Session, owner_id: str, adding: int, limit: int) -> None:
    """413 when ``adding`` bytes would take the owner's datasets over ``limit``. The
    owner's key row is locked first (PostgreSQL; SQLite's writers are serialized
    anyway), so concurrent uploads of one key count one after the other."""
    session.execute(select(ApiKey.id).where(ApiKey.id == owner_id).with_for_update())
    usage = stored_bytes(session, owner_id)
    if usage + adding > limit:
        raise PayloadTooLarge(
            f"this key's datasets take {usage} bytes in the store and this one {adding}, "
            f"over the limit of {limit} bytes (FITQ_MAX_STORED_BYTES_PER_KEY); delete a "
            "dataset to make room"
        )


@dataclass(frozen=True)
class _Facts:
    format: str
    feature_names: list[str]
    label: str | None
    classes: list[str] | None
    class_counts: list[int] | None
    shape: DataShape

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> _Facts:
        return cls(
            format=meta["format"],
            feature_names=list(meta["feature_names"]),
            label=meta["label"],
            classes=meta["classes"],
            class_counts=meta["class_counts"],
            shape=DataShape(**meta["shape"]),
        )


def _task(value: str | None) -> TaskKind | None:
    if not value:
        return None
    if value not in TASKS:
        raise InvalidInput(
            f"task must be 'classification' or 'regression', not {value!r}", loc=["body", "task"]
        )
    return value  # type: ignore[return-value]


def _name(upload: NewUpload) -> str:
    name = (upload.name or "").strip()
    if not name:
        name = client_name(upload.filename) or f"dataset-{upload.sha256[:12]}"
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"name is over {MAX_NAME_CHARS} characters", loc=["body", "name"])
    return name


# -- read ---------------------------------------------------------------------


def get(
    session: Session, owner_id: str, dataset_id: str, *, loc: list[str] | None = None
) -> Dataset:
    """The dataset ``dataset_id`` as ``owner_id`` may see it: a built-in, or
    one of the owner's rows. Another owner's id is "not found", word for word."""
    if dataset_id in builtin.BUILTINS:
        return builtin_row(dataset_id)
    row = session.get(Dataset, dataset_id)
    if row is None or row.owner_id != owner_id:
        where = f"{loc[-1]}: " if loc else ""
        raise NotFound(f"{where}no dataset with id {dataset_id!r}", loc=loc)
    return row


def public(row: Dataset) -> DatasetPublic:
    """The dataset as the API shows it."""
    task: ClassificationTask | RegressionTask
    if row.kind == "classification":
        task = ClassificationTask(classes=row.classes or [], counts=row.class_counts or [])
    else:
        task = RegressionTask(target_dim=row.target_dim or 1)
    return DatasetPublic(
        id=row.id,
        name=row.name,
        builtin=row.owner_id == "",
        format=row.format,
        filename=row.filename,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        n_rows=row.n_rows,
        n_features=row.n_features,
        label=row.label,
        task=task,
        created_at=row.created_at,
    )


def is_builtin(row: Dataset) -> bool:
    return row.id in builtin.BUILTINS and row.owner_id == ""


def builtin_row(name: str) -> Dataset:
    """A built-in dataset as a transient (never saved) row, for reads and checks."""
    info = builtin.builtin_info(name)
    shape: DataShape = info.shape
    return Dataset(
        id=name,
        owner_id="",
        name=name,
        filename=None,
        format="builtin",
        sha256=None,
        size_bytes=None,
        n_rows=shape.n_rows,
        n_features=shape.n_features,
        label=info.label,
        kind=shape.kind,
        n_classes=shape.n_classes,
        target_dim=shape.target_dim,
        classes=info.classes,
        class_counts=info.class_counts,
        feature_names=info.feature_names,
        storage_key="",
        created_at=None,
    )


def shape_of(row: Dataset) -> DataShape:
    return DataShape(
        n_rows=int(row.n_rows),
        n_features=int(row.n_features),
        kind=row.kind,  # type: ignore[arg-type]
        n_classes=row.n_classes,
        target_dim=row.target_dim,
    )


# -- list ---------------------------------------------------------------------


def list_page(session: Session, owner_id: str, cursor: str | None, limit: int) -> Page[Dataset]:
    """The built-ins (by name) first, then the owner's uploads, newest first.

    The cursor is opaque: ``{"b": n}`` inside the built-ins, ``{"u": keyset}``
    inside the uploads (``paging.newest_first``; null: from the newest).
    """
    builtins = sorted(builtin.BUILTINS)
    phase, offset, after = _decode_cursor(cursor)
    items: list[Dataset] = []
    if phase == "b":
        items = [builtin_row(name) for name in builtins[offset : offset + limit]]
        if offset + limit < len(builtins):
            return Page(items=items, next_cursor=paging.encode_cursor({"b": offset + limit}))
    query = select(Dataset).where(Dataset.owner_id == owner_id)
    rows, more = paging.newest_first(session, query, Dataset, after, limit - len(items))
    next_cursor = None
    if more:  # rows is empty when the page ended exactly at the built-ins' end
        next_cursor = paging.encode_cursor({"u": paging.keyset_of(rows[-1]) if rows else None})
    return Page(items=[*items, *rows], next_cursor=next_cursor)


def _decode_cursor(cursor: str | None) -> tuple[str, int, paging.Keyset | None]:
    if not cursor:
        return "b", 0, None
    data = paging.decode_cursor(cursor)
    try:
        if "b" in data:
            return "b", max(0, int(data["b"])), None
        if data["u"] is None:
            return "u", 0, None
        return "u", 0, paging.parse_keyset(data["u"])
    except (TypeError, KeyError, ValueError):
        raise paging.bad_cursor() from None


# -- delete -------------------------------------------------------------------


def delete_dataset(session: Session, store: ArtifactStore, row: Dataset) -> None:
    """Delete an upload: 409 while a job that is not terminal uses it; its files
    go too when no other row points at them.

    The row is deleted first and the jobs checked after, in one transaction:
    on PostgreSQL a concurrent submission holds the row ``FOR SHARE``, so one
    of the two waits and sees the other. The files are removed once the
    caller's transaction has committed (``engine.after_commit``), so a crash
    leaves orphan files at worst (the collector's, ``store/gc.py``), never a
    row without files; and under the prefix's lock, if no row names them by
    then: another key's upload of the same bytes may have found them stored
    in between (``store/locks.py``).
    """
    if is_builtin(row):
        raise Conflict(f"dataset {row.id!r} is built in and cannot be deleted")
    dataset_id, storage_key = row.id, row.storage_key
    session.execute(delete(Dataset).where(Dataset.id == dataset_id))
    using = session.execute(
        select(Job.id, Job.status)
        .where(
            or_(
                Job.dataset_id == dataset_id,
                Job.validation_dataset_id == dataset_id,
                Job.test_dataset_id == dataset_id,
            ),
            Job.status.not_in(TERMINAL_STATUSES),
        )
        .order_by(Job.created_at)
        .limit(1)
    ).first()
    if using is not None:
        raise Conflict(
            f"dataset {dataset_id!r} is used by job {using.id!r}, which is {using.status}; "
            "cancel the job or wait for it to end"
        )
    shared = session.scalar(select(exists().where(Dataset.storage_key == storage_key)))
    if not shared:
        after_commit(session, lambda: _collect(session, store, storage_key))
    log.info("dataset deleted", extra={"action": "delete", "dataset_id": dataset_id})


def _collect(session: Session, store: ArtifactStore, prefix: str) -> None:
    """After a delete committed: remove ``prefix`` in a transaction of its own,
    unless a row names it again; a failure leaves the files to the collector."""
    try:
        with Session(session.get_bind()) as own, own.begin():
            gc.collect_prefix(own, store, prefix)
    except Exception:
        log.warning(
            "dataset files not deleted", extra={"action": "delete", "prefix": prefix}, exc_info=True
        )


def count_uploads(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Dataset)) or 0)
