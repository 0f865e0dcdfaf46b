"""A succeeded job's trained model in the format asked (``GET /v1/jobs/{id}/model?format=``):
fitq's own safetensors as stored, or converted on the way out by ``service/export``
(a Keras 3 ``.keras`` archive, an ONNX model; docs/export.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fitq.service.db.models import Job
from fitq.service.jobs import prediction
from fitq.service.store import ArtifactStore

ModelFormat = Literal["safetensors", "keras", "onnx"]


@dataclass(frozen=True)
class ModelFile:
    """The bytes of a model file and how it is served."""

    content: bytes
    media_type: str
    extension: str


def model_file(store: ArtifactStore, job: Job, fmt: ModelFormat = "safetensors") -> ModelFile:
    """The job's model as ``fmt`` (409 before the job succeeded, or for a model the
    format cannot express)."""
    stored = prediction.model_bytes(store, job)
    if fmt == "keras":
        from fitq.service.export import keras_archive  # h5py only when an archive is asked

        return ModelFile(keras_archive.to_keras(stored), "application/octet-stream", ".keras")
    if fmt == "onnx":
        from fitq.service.export import onnx_graph  # onnx only when a graph is asked

        return ModelFile(onnx_graph.to_onnx(stored), "application/octet-stream", ".onnx")
    return ModelFile(stored, "application/octet-stream", ".safetensors")
