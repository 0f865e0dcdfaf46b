"""SPEC §7: every bad input gets a clear 4xx whose ``detail`` names the problem,
the service stays up, and nothing stored changes (rows and files counted
before and after)."""

from __future__ import annotations

import copy
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from fitq.service.settings import Settings
from tests.api.conftest import Api, Stored, Upload, csv_bytes
from tests.conftest import Owner

pytestmark = pytest.mark.anyio

UPLOAD_LIMIT_BYTES = 4096

BASE: dict[str, Any] = {
    "model": {
        "input_dim": 4,
        "layers": [
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dropout", "rate": 0.2},
            {"type": "dense", "units": 3, "activation": "softmax"},
        ],
    },
    "compile": {
        "optimizer": {"name": "adam", "learning_rate": 0.001},
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "fit": {"epochs": 3, "batch_size": 16},
    "dataset_id": "iris",
}


def spec_with(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    change(body)
    return body


def layer(i: int, **fields: Any) -> Callable[[dict[str, Any]], object]:
    return lambda b: b["model"]["layers"][i].update(fields)


def pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    return buffer.getvalue()


@dataclass
class Ctx:
    api: Api
    upload: Upload
    other: Owner
    made: dict[str, str]


Action = Callable[[Ctx], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    detail: str  # a piece of the message that names the problem (case-insensitive)
    action: Action
    setup: Callable[[Ctx], Awaitable[None]] | None = None


def submit(body: Any) -> Action:
    async def act(ctx: Ctx) -> httpx.Response:
        if callable(body):
            return await ctx.api.post("/v1/jobs", json=body(ctx))
        if isinstance(body, bytes):
            return await ctx.api.post(
                "/v1/jobs",
                content=body,
                headers={**ctx.api.headers, "Content-Type": "application/json"},
            )
        return await ctx.api.post("/v1/jobs", json=body)

    return act


def upload_file(filename: str, content: bytes, **fields: str) -> Action:
    async def act(ctx: Ctx) -> httpx.Response:
        return await ctx.upload(filename, content, **fields)

    return act


def upload_setup(key: str, filename: str, content: bytes) -> Callable[[Ctx], Awaitable[None]]:
    async def setup(ctx: Ctx) -> None:
        r = await ctx.upload(filename, content)
        assert r.status_code == 201, r.text
        ctx.made[key] = r.json()["id"]

    return setup


def raw_upload(content: bytes, content_type: str) -> Action:
    async def act(ctx: Ctx) -> httpx.Response:
        headers = {**ctx.api.headers, "Content-Type": content_type}
        return await ctx.api.post("/v1/datasets", content=content, headers=headers)

    return act


def form(**parts: Any) -> Action:
    async def act(ctx: Ctx) -> httpx.Response:
        data = {k: v for k, v in parts.items() if isinstance(v, str)}
        files = {k: v for k, v in parts.items() if not isinstance(v, str)}
        return await ctx.api.post("/v1/datasets", data=data, files=files or {"x": ("", b"")})

    return act


def get(path: str, as_other: bool = False) -> Action:
    async def act(ctx: Ctx) -> httpx.Response:
        headers = ctx.other.headers if as_other else ctx.api.headers
        return await ctx.api.get(path.format(**ctx.made), headers=headers)

    return act


def delete(path: str) -> Action:
    async def act(ctx: Ctx) -> httpx.Response:
        return await ctx.api.delete(path.format(**ctx.made))

    return act


TWELVE_CLASSES = csv_bytes(n_rows=24, n_features=4, n_classes=12)
FIVE_CLASSES = csv_bytes(n_rows=10, n_features=4, n_classes=5)

CASES = [
    # -- the job spec
    Case("malformed-json", 422, "not valid JSON", submit(b'{"model": {"input_dim": 4,')),
    Case("json-not-an-object", 422, "JSON object", submit(b"[1, 2, 3]")),
    Case("empty-body", 422, "empty", submit(b"")),
    Case(
        "unknown-layer",
        422,
        "unknown layer type 'conv2d'",
        submit(spec_with(layer(0, type="conv2d"))),
    ),
    Case(
        "unknown-activation",
        422,
        "unknown activation 'relux'",
        submit(spec_with(layer(0, activation="relux"))),
    ),
    Case(
        "unknown-loss",
        422,
        "unknown loss 'hinge_x'",
        submit(spec_with(lambda b: b["compile"].update(loss="hinge_x"))),
    ),
    Case(
        "unknown-optimizer",
        422,
        "unknown optimizer 'adamx'",
        submit(spec_with(lambda b: b["compile"].update(optimizer="adamx"))),
    ),
    Case("zero-units", 422, "units", submit(spec_with(layer(0, units=0)))),
    Case("negative-units", 422, "units", submit(spec_with(layer(0, units=-3)))),
    Case("zero-epochs", 422, "fit.epochs", submit(spec_with(lambda b: b["fit"].update(epochs=0)))),
    Case(
        "negative-epochs",
        422,
        "fit.epochs",
        submit(spec_with(lambda b: b["fit"].update(epochs=-1))),
    ),
    Case(
        "zero-batch-size",
        422,
        "batch_size",
        submit(spec_with(lambda b: b["fit"].update(batch_size=0))),
    ),
    Case(
        "zero-learning-rate",
        422,
        "learning_rate",
        submit(spec_with(lambda b: b["compile"]["optimizer"].update(learning_rate=0))),
    ),
    Case(
        "negative-learning-rate",
        422,
        "learning_rate",
        submit(spec_with(lambda b: b["compile"]["optimizer"].update(learning_rate=-0.1))),
    ),
    Case("dropout-rate-1", 422, "rate", submit(spec_with(layer(1, rate=1.0)))),
    Case(
        "input-dim-mismatch",
        422,
        "features",
        submit(spec_with(lambda b: b["model"].update(input_dim=10))),
    ),
    Case(
        "12-classes-for-10-units",
        422,
        "12",
        submit(
            lambda ctx: spec_with(
                lambda b: (
                    b.update(dataset_id=ctx.made["twelve"]),
                    b["model"]["layers"][2].update(units=10),
                )
            )
        ),
        setup=upload_setup("twelve", "twelve.csv", TWELVE_CLASSES),
    ),
    Case(
        "labels-out-of-range",
        422,
        "validation",
        submit(lambda ctx: spec_with(lambda b: b.update(validation_dataset_id=ctx.made["five"]))),
        setup=upload_setup("five", "five.csv", FIVE_CLASSES),
    ),
    Case(
        "unknown-dataset-id",
        404,
        "dataset_id",
        submit(spec_with(lambda b: b.update(dataset_id="f" * 32))),
    ),
    Case(
        "unknown-test-dataset-id",
        404,
        "test_dataset_id",
        submit(spec_with(lambda b: b.update(test_dataset_id="nope"))),
    ),
    # -- uploads
    Case("nan-cell", 422, "row", upload_file("d.csv", b"a,b,y\n1,2,0\nnan,3,1\n")),
    Case("inf-cell", 422, "row", upload_file("d.csv", b"a,b,y\n1,2,0\ninf,3,1\n")),
    Case("non-numeric-cell", 422, "abc", upload_file("d.csv", b"a,b,y\n1,2,0\nabc,3,1\n")),
    Case("ragged-rows", 422, "2 fields", upload_file("d.csv", b"a,b,y\n1,2,0\n1,2\n3,4,1\n")),
    Case("empty-file", 422, "empty", upload_file("d.csv", b"")),
    Case("header-only", 422, "header", upload_file("d.csv", b"a,b,y\n")),
    Case("over-the-limit", 413, "limit", upload_file("d.csv", csv_bytes(n_rows=200))),
    Case(
        "not-what-its-name-says", 422, "not a Parquet file", upload_file("d.parquet", csv_bytes())
    ),
    Case("npz-with-pickles", 422, "pickle", upload_file("d.npz", pickled_npz())),
    Case("unknown-label-column", 422, "nope", upload_file("d.csv", csv_bytes(), label="nope")),
    Case("unknown-task", 422, "task", upload_file("d.csv", csv_bytes(), task="clustering")),
    Case("unknown-form-field", 422, "lable", upload_file("d.csv", csv_bytes(), lable="y")),
    Case("no-file-field", 422, "file", form(name="x")),
    Case("not-multipart", 422, "multipart", raw_upload(b"a,b\n1,2\n", "text/csv")),
    Case(
        "truncated-multipart",
        422,
        "incomplete",
        raw_upload(
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\na,b\n',
            "multipart/form-data; boundary=B",
        ),
    ),
    # -- ids
    Case("unknown-dataset", 404, "no dataset", get("/v1/datasets/nope")),
    Case("delete-unknown-dataset", 404, "no dataset", delete("/v1/datasets/nope")),
    Case("unknown-job", 404, "no job", get("/v1/jobs/nope")),
    Case(
        "another-users-dataset",
        404,
        "no dataset",
        get("/v1/datasets/{mine}", as_other=True),
        setup=upload_setup("mine", "m.csv", csv_bytes()),
    ),
]


class TestBadInput:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_upload_bytes": UPLOAD_LIMIT_BYTES})

    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    async def test_a_clear_4xx_and_nothing_changes(
        self,
        case: Case,
        api: Api,
        upload: Upload,
        make_owner: Callable[..., Owner],
        stored: Callable[[], Stored],
        upload_tmp: Path,
    ) -> None:
        ctx = Ctx(api=api, upload=upload, other=make_owner("other"), made={})
        if case.setup is not None:
            await case.setup(ctx)
        before = stored()
        r = await case.action(ctx)
        assert r.status_code == case.status, r.text
        detail = r.json()["detail"]
        text = detail if isinstance(detail, str) else " ".join(str(e) for e in detail)
        assert case.detail.lower() in text.lower(), text
        assert (await api.client.get("/healthz")).status_code == 200
        assert stored() == before
        assert list(upload_tmp.iterdir()) == []


class TestPathLikeFileName:
    async def test_is_kept_as_metadata_only(
        self, upload: Upload, stored: Callable[[], Stored], tmp_path: Path
    ) -> None:
        before = set(stored().files)
        r = await upload("../../etc/passwd", csv_bytes())
        assert r.status_code == 201, r.text
        assert r.json()["filename"] == "../../etc/passwd"
        assert r.json()["name"] == "passwd"
        new = set(stored().files) - before
        assert new and all(f.startswith("store/datasets/") for f in new), new
        # where "../../etc/passwd" would land from the store's folders, and nothing
        # named after it anywhere in this test's own folder (other tests' folders may be
        # named after their parameters, "/etc/passwd" included)
        landings = [tmp_path.parent / "etc" / "passwd", tmp_path / "etc" / "passwd"]
        assert not any(path.exists() for path in landings)
        assert not any(tmp_path.rglob("*passwd*"))

    async def test_a_windows_path_is_metadata_too(self, upload: Upload) -> None:
        r = await upload("..\\..\\boot.ini.csv", csv_bytes())
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "boot.ini.csv"
