"""A job's checkpoint files in the artifact store: named by position, checksummed,
verified before use, kept two deep.

Key::

    jobs/<job>/checkpoints/<epoch:05d>-<step:07d>-a<attempt>-<sha256>.safetensors

- ``epoch`` counts the *completed* epochs and ``step`` the steps done in the
  next one, so the names sort in training order (the end of epoch 3 is
  ``00003-0000000``, a mid-epoch checkpoint of epoch 4 ``00003-0000040``).
- ``attempt`` keeps two attempts from ever writing the same file: a stale
  worker's late file cannot replace the current attempt's.
- ``sha256`` is the checksum of the file's bytes, carried by the name itself,
  so a file and its checksum appear together in one atomic rename (no sidecar
  that could be written without its file, or the other way round). The
  database's ``checkpoint_key`` (written by a fenced transaction) therefore
  names a file *and* the bytes it must hold.

Writing (:func:`save`, then :class:`Trail` once the key is committed): the
last ``KEEP`` committed positions are kept, older files pruned after each
commit; a job that ended has its folder dropped (:func:`drop`).

Resume order (:func:`load_for_resume`): the committed ``checkpoint_key`` first;
then the older files of the folder, newest first, each verified; then nothing
(a fresh start, which a deterministic run turns into the same result). Files
newer than the committed key are never used: their epoch was not recorded, and
resuming past it would lose its History row.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from fitq.service.store import ArtifactStore, keys

log = logging.getLogger("fitq.worker")

KEEP = 2
"""Checkpoints kept per job while it trains: the newest and the one before it."""


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint file, as its key describes it."""

    key: str
    epoch: int  # completed epochs
    step: int  # steps done in the next epoch
    attempt: int
    sha256: str | None  # None for files written before checksums (accepted unverified)

    @property
    def position(self) -> tuple[int, int]:
        return (self.epoch, self.step)


def folder(job_id: str) -> str:
    return keys.checkpoints(job_id)


def key_for(job_id: str, epoch: int, step: int, attempt: int, data: bytes) -> str:
    return keys.checkpoint(job_id, epoch, step, attempt, hashlib.sha256(data).hexdigest())


def parse(key: str) -> CheckpointRef | None:
    """The checkpoint a key names, or None for anything else (temporary files…)."""
    match = keys.CHECKPOINT_NAME.match(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    epoch, step, attempt, digest = match.groups()
    return CheckpointRef(key, int(epoch), int(step), int(attempt), digest)


def listing(store: ArtifactStore, job_id: str) -> list[CheckpointRef]:
    """The job's checkpoint files, oldest first (by position, then attempt)."""
    try:
        names = store.fs.ls(f"{store.root}/{folder(job_id)}", detail=False)
    except FileNotFoundError:
        return []
    refs = [parse(f"{folder(job_id)}/{str(name).rsplit('/', 1)[-1]}") for name in names]
    return sorted((r for r in refs if r is not None), key=lambda r: (r.position, r.attempt, r.key))


def verify(ref: CheckpointRef, data: bytes) -> bool:
    """Whether ``data`` is the complete file ``ref`` names."""
    if ref.sha256 is None:
        from fitq.worker.engine import TrainingError
        from fitq.worker.engine import checkpoint as engine_checkpoint

        try:
            engine_checkpoint.unpack(data)
        except TrainingError:
            return False
        return True
    return hashlib.sha256(data).hexdigest() == ref.sha256


def load_for_resume(
    store: ArtifactStore, job_id: str, committed: str | None
) -> tuple[CheckpointRef, bytes] | None:
    """The newest sound checkpoint at or before the committed one, or None."""
    if committed is None:
        return None
    head = parse(committed) or CheckpointRef(committed, 1 << 30, 0, 0, None)
    older = [r for r in reversed(listing(store, job_id)) if r.position < head.position]
    for ref in [head, *older]:
        try:
            data = store.get_bytes(ref.key)
        except FileNotFoundError:
            log.warning("checkpoint missing", extra={"job_id": job_id, "key": ref.key})
            continue
        if verify(ref, data):
            return ref, data
        log.warning("checkpoint damaged", extra={"job_id": job_id, "key": ref.key})
    log.warning("no sound checkpoint: starting over", extra={"job_id": job_id})
    return None


def prune(store: ArtifactStore, job_id: str, keep_from: tuple[int, int]) -> None:
    """Delete the files older than ``keep_from`` (the previous committed position)."""
    for ref in listing(store, job_id):
        if ref.position < keep_from:
            store.delete(ref.key)


def save(
    store: ArtifactStore, job_id: str, attempt: int, position: tuple[int, int], data: bytes
) -> str:
    """Write a checkpoint's bytes under the key naming its position (completed
    epochs, steps into the next), the attempt and their sha256; return the key."""
    epoch, step = position
    key = key_for(job_id, epoch, step, attempt, data)
    store.put_bytes(key, data)
    return key


class Trail:
    """The committed checkpoints of one attempt: after each commit, the files
    older than the one before the newest are pruned."""

    def __init__(self, store: ArtifactStore, job_id: str, resumed: CheckpointRef | None):
        self.store = store
        self.job_id = job_id
        self._positions = [resumed.position] if resumed is not None else []

    def committed(self, key: str) -> None:
        """``key`` was committed (its fenced write returned): prune behind it."""
        ref = parse(key)
        assert ref is not None, key
        self._positions.append(ref.position)
        del self._positions[:-KEEP]
        prune(self.store, self.job_id, keep_from=self._positions[0])


def drop(store: ArtifactStore, job_id: str) -> None:
    """A job that ended needs its checkpoints no more (best effort)."""
    try:
        store.delete_prefix(folder(job_id))
    except Exception:
        log.warning("checkpoints not deleted", extra={"job_id": job_id}, exc_info=True)
