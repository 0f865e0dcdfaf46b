"""Every key of the artifact store, named in one place::

    datasets/<sha256>[-<options>]/x.npy      an upload's canonical features
    datasets/<sha256>[-<options>]/y.npy      … and targets
    datasets/<sha256>[-<options>]/meta.json  … and what the row is made from (written last)
    jobs/<job>/checkpoints/<epoch:05d>-<step:07d>-a<attempt>-<sha256>.safetensors
    jobs/<job>/model-a<attempt>.safetensors  the trained model of an attempt

- A dataset prefix is the sha256 of the uploaded bytes: the same bytes share
  one canonical form whoever uploads them. Another ``label`` or ``task`` gives
  another canonical form, so its options' digest is appended.
- A checkpoint's name sorts in training order and carries its own checksum
  (``worker/checkpoints.py`` says why each part is there).
- A model file per attempt: a superseded attempt that wakes up late cannot
  overwrite the model the job row points to.

Nothing here is derived from what a client named its file.
"""

from __future__ import annotations

import hashlib
import json
import re

DATASETS = "datasets"
JOBS = "jobs"

CHECKPOINT_NAME = re.compile(r"^(\d{5})-(\d{7})-a(\d+)(?:-([0-9a-f]{64}))?\.safetensors$")
"""A checkpoint's file name: completed epochs, steps into the next, attempt,
sha256 (absent in files written before checksums)."""
MODEL_NAME = re.compile(r"^model-a(\d+)\.safetensors$")
"""A trained model's file name: the attempt that wrote it."""


def dataset(sha256: str, *, label: str | None = None, task: str | None = None) -> str:
    """The prefix of an upload's canonical form (``x.npy``, ``y.npy``, ``meta.json``)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a hex sha256: {sha256!r}")
    if label is None and task is None:
        return f"{DATASETS}/{sha256}"
    options = json.dumps({"label": label, "task": task}, sort_keys=True)
    return f"{DATASETS}/{sha256}-{hashlib.sha256(options.encode()).hexdigest()[:16]}"


def dataset_x(prefix: str) -> str:
    return f"{prefix}/x.npy"


def dataset_y(prefix: str) -> str:
    return f"{prefix}/y.npy"


def dataset_meta(prefix: str) -> str:
    """Written last: a prefix with its ``meta.json`` is complete."""
    return f"{prefix}/meta.json"


def job(job_id: str) -> str:
    """The folder of everything a job has in the store (checkpoints, models)."""
    return f"{JOBS}/{job_id}"


def checkpoints(job_id: str) -> str:
    """The folder of a job's checkpoints."""
    return f"{job(job_id)}/checkpoints"


def checkpoint(job_id: str, epoch: int, step: int, attempt: int, sha256: str) -> str:
    """The checkpoint after ``epoch`` completed epochs and ``step`` steps of the next."""
    return f"{checkpoints(job_id)}/{epoch:05d}-{step:07d}-a{attempt}-{sha256}.safetensors"


def model(job_id: str, attempt: int) -> str:
    """The trained model that ``attempt`` of the job wrote."""
    return f"{job(job_id)}/model-a{attempt}.safetensors"
