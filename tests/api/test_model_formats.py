"""GET /v1/jobs/{id}/model?format=: the trained model as Keras and ONNX load it, each
predicting what POST /v1/jobs/{id}/predict returns (normalization included)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

from fitq.service.db.models import Job
from fitq.service.store import ArtifactStore
from tests.api.conftest import Api
from tests.api.trained_models import Trained, train_job
from tests.support.keras_reference import IGNORE_ARRAY_COPY_WARNING, keras_on_torch

pytestmark = [
    pytest.mark.anyio,
    IGNORE_ARRAY_COPY_WARNING,
]

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Keras 3 on the torch backend (the backend is chosen when keras is first imported)."""
    with keras_on_torch(tmp_path_factory) as module:
        yield module


@pytest.fixture
def trained(store: ArtifactStore, job_factory: Callable[..., Job]) -> Trained:
    return train_job(store, job_factory)


async def predicted(api: Api, job: Job, x: np.ndarray) -> np.ndarray:
    r = await api.post(f"/v1/jobs/{job.id}/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    return np.array(r.json()["probabilities"])


class TestFormats:
    async def test_keras_archive_loads_and_predicts_as_fitq(
        self, api: Api, trained: Trained, keras: ModuleType, tmp_path: Path
    ) -> None:
        r = await api.get(f"/v1/jobs/{trained.job.id}/model", params={"format": "keras"})
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] == 'attachment; filename="iris-mlp.keras"'
        path = tmp_path / "model.keras"
        path.write_bytes(r.content)
        model = keras.saving.load_model(path)
        ours = model.predict(trained.x, verbose=0)
        np.testing.assert_allclose(
            ours, await predicted(api, trained.job, trained.x), atol=TOLERANCE
        )

    async def test_onnx_runs_to_fitqs_outputs(self, api: Api, trained: Trained) -> None:
        onnxruntime = importlib.import_module("onnxruntime")
        r = await api.get(f"/v1/jobs/{trained.job.id}/model", params={"format": "onnx"})
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] == 'attachment; filename="iris-mlp.onnx"'
        session = onnxruntime.InferenceSession(r.content, providers=["CPUExecutionProvider"])
        (name,) = [i.name for i in session.get_inputs()]
        (ours,) = session.run(None, {name: trained.x.astype(np.float32)})
        np.testing.assert_allclose(
            ours, await predicted(api, trained.job, trained.x), atol=TOLERANCE
        )

    @pytest.mark.parametrize("params", [{}, {"format": "safetensors"}], ids=["default", "named"])
    async def test_safetensors_is_the_stored_file(
        self, api: Api, trained: Trained, store: ArtifactStore, params: dict[str, str]
    ) -> None:
        r = await api.get(f"/v1/jobs/{trained.job.id}/model", params=params)
        assert r.status_code == 200, r.text
        assert r.content == store.get_bytes(trained.job.model_key)
        assert "normalization.mean" in load_safetensors(r.content)
        assert r.headers["content-disposition"].endswith('.safetensors"')


class TestRefusals:
    async def test_an_unknown_format_is_422_naming_the_allowed(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        job = job_factory(status="succeeded", model_key="jobs/x/model.safetensors")
        r = await api.get(f"/v1/jobs/{job.id}/model", params={"format": "h5"})
        assert r.status_code == 422, r.text
        detail = str(r.json()["detail"])
        assert all(name in detail for name in ("safetensors", "keras", "onnx"))

    @pytest.mark.parametrize("fmt", ["keras", "onnx"])
    async def test_before_success_is_409(
        self, api: Api, job_factory: Callable[..., Job], fmt: str
    ) -> None:
        job = job_factory(status="running")
        r = await api.get(f"/v1/jobs/{job.id}/model", params={"format": fmt})
        assert r.status_code == 409, r.text

    async def test_another_owners_job_is_404(
        self, api: Api, trained: Trained, make_owner: Callable[..., object]
    ) -> None:
        other = make_owner("other")
        r = await api.get(
            f"/v1/jobs/{trained.job.id}/model",
            params={"format": "keras"},
            headers=other.headers,  # type: ignore[attr-defined]
        )
        assert r.status_code == 404
