"""/v1/datasets: uploads in every format, storage by content hash, the limit,
list and read (built-ins included), delete."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from fitq.service.db.models import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from fitq.service.settings import Settings
from tests.api.conftest import Api, Stored, Upload, csv_bytes, npz_bytes, parquet_bytes
from tests.conftest import Owner

pytestmark = pytest.mark.anyio

BUILTINS = ["breast_cancer", "diabetes", "digits", "iris", "wine"]


def store_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class TestUpload:
    async def test_csv_gives_the_dataset_resource(self, upload: Upload) -> None:
        content = csv_bytes(n_rows=30, n_features=4, n_classes=3)
        r = await upload("train.csv", content, name="my data")
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["name"] == "my data"
        assert body["format"] == "csv"
        assert body["sha256"] == hashlib.sha256(content).hexdigest()
        assert body["size_bytes"] == len(content)
        assert (body["n_rows"], body["n_features"]) == (30, 4)
        assert body["label"] == "label"
        assert body["task"] == {
            "kind": "classification",
            "classes": ["0", "1", "2"],
            "counts": [10, 10, 10],
        }
        assert body["builtin"] is False and body["filename"] == "train.csv"
        assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]

    async def test_tsv(self, upload: Upload) -> None:
        r = await upload("train.tsv", csv_bytes(n_rows=12, n_features=2, sep="\t"))
        assert r.status_code == 201, r.text
        assert (r.json()["format"], r.json()["n_features"], r.json()["n_rows"]) == ("tsv", 2, 12)

    async def test_parquet_with_a_text_label(self, upload: Upload) -> None:
        r = await upload("t.parquet", parquet_bytes(n_rows=30))
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["format"], body["n_features"], body["label"]) == ("parquet", 2, "target")
        assert body["task"] == {
            "kind": "classification",
            "classes": ["cat", "dog"],
            "counts": [15, 15],
        }

    async def test_npz_regression(self, upload: Upload) -> None:
        r = await upload("d.npz", npz_bytes())
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["format"], body["n_rows"], body["n_features"]) == ("npz", 20, 3)
        assert body["task"] == {"kind": "regression", "target_dim": 1}
        assert body["label"] is None

    async def test_label_picks_the_target_column(self, upload: Upload) -> None:
        r = await upload("t.csv", b"a,b,c\n1,0,0.5\n2,1,0.7\n3,0,0.1\n", label="b")
        assert r.status_code == 201, r.text
        assert r.json()["label"] == "b" and r.json()["n_features"] == 2
        assert r.json()["task"]["kind"] == "classification"

    async def test_task_overrides_the_kind(self, upload: Upload) -> None:
        r = await upload("t.csv", b"a,y\n1,0\n2,1\n3,2\n", task="regression")
        assert r.status_code == 201, r.text
        assert r.json()["task"]["kind"] == "regression"

    async def test_the_name_defaults_to_the_file_name(self, upload: Upload) -> None:
        r = await upload("numbers.csv", csv_bytes())
        assert r.json()["name"] == "numbers.csv"

    async def test_the_same_bytes_are_stored_once(
        self, upload: Upload, tmp_path: Path, make_owner: Callable[..., Owner]
    ) -> None:
        content = csv_bytes()
        first = await upload("a.csv", content)
        files = store_files(tmp_path)
        other = make_owner("other")
        second = await upload("b.csv", content, headers=other.headers)
        third = await upload("c.csv", content)
        assert {first.status_code, second.status_code, third.status_code} == {201}
        ids = {first.json()["id"], second.json()["id"], third.json()["id"]}
        assert len(ids) == 3, "each upload is its own dataset"
        assert store_files(tmp_path) == files, "the canonical arrays are stored once"
        assert len(files) == 3 and all(f.startswith("datasets/") for f in files)
        assert second.json()["task"] == first.json()["task"]

    async def test_another_label_is_another_canonical_form(
        self, upload: Upload, tmp_path: Path
    ) -> None:
        content = b"a,b,c\n1,0,1\n2,1,0\n3,0,1\n"
        assert (await upload("t.csv", content)).status_code == 201
        assert (await upload("t.csv", content, label="b")).status_code == 201
        assert len(store_files(tmp_path)) == 6

    async def test_upload_temp_files_are_removed(self, upload: Upload, upload_tmp: Path) -> None:
        assert (await upload("a.csv", csv_bytes())).status_code == 201
        assert (await upload("a.csv", b"")).status_code == 422
        assert list(upload_tmp.iterdir()) == []


class TestLimit:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_upload_bytes": 2048})

    async def test_a_file_over_the_limit_is_413_and_nothing_is_stored(
        self, upload: Upload, stored: Callable[[], Stored], upload_tmp: Path
    ) -> None:
        before = stored()
        r = await upload("big.csv", csv_bytes(n_rows=400))
        assert r.status_code == 413
        assert "limit" in r.json()["detail"]
        assert stored() == before
        assert list(upload_tmp.iterdir()) == []

    async def test_the_limit_acts_while_the_body_streams(
        self, api: Api, stored: Callable[[], Stored]
    ) -> None:
        """No Content-Length: the parser's byte count stops the upload."""
        sent = 0

        async def body():  # type: ignore[no-untyped-def]
            nonlocal sent
            yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\n'
            for _ in range(1000):
                sent += 1
                yield b"1,2,3\n" * 100
            yield b"\r\n--B--\r\n"

        before = stored()
        r = await api.post(
            "/v1/datasets",
            content=body(),
            headers={**api.headers, "Content-Type": "multipart/form-data; boundary=B"},
        )
        assert r.status_code == 413
        assert sent < 10, "the server stopped reading early"
        assert stored() == before

    async def test_a_declared_content_length_over_the_limit_is_refused_upfront(
        self, api: Api
    ) -> None:
        r = await api.post(
            "/v1/datasets",
            content=b"x" * 10,
            headers={
                **api.headers,
                "Content-Type": "multipart/form-data; boundary=B",
                "Content-Length": str(10**9),
            },
        )
        assert r.status_code == 413

    async def test_a_file_just_under_the_limit_is_accepted(self, upload: Upload) -> None:
        content = csv_bytes(n_rows=40)[:2048]
        content = content[: content.rindex(b"\n") + 1]
        assert len(content) <= 2048
        assert (await upload("ok.csv", content)).status_code == 201


class TestListAndRead:
    async def test_builtins_are_listed_for_every_key(self, api: Api) -> None:
        r = await api.get("/v1/datasets")
        assert r.status_code == 200
        items = r.json()["items"]
        assert [d["id"] for d in items] == BUILTINS
        assert r.json()["next_cursor"] is None
        digits = next(d for d in items if d["id"] == "digits")
        assert (digits["n_rows"], digits["n_features"], digits["builtin"]) == (1797, 64, True)
        assert len(digits["task"]["classes"]) == 10
        diabetes = next(d for d in items if d["id"] == "diabetes")
        assert diabetes["task"]["kind"] == "regression"

    async def test_a_builtin_reads_by_its_name(self, api: Api) -> None:
        r = await api.get("/v1/datasets/iris")
        assert r.status_code == 200
        assert (r.json()["n_rows"], r.json()["n_features"]) == (150, 4)

    async def test_uploads_follow_builtins_newest_first(self, api: Api, upload: Upload) -> None:
        ids = [(await upload(f"{i}.csv", csv_bytes(n_rows=10 + i))).json()["id"] for i in range(3)]
        items = (await api.get("/v1/datasets")).json()["items"]
        assert [d["id"] for d in items] == BUILTINS + ids[::-1]

    @pytest.mark.parametrize("limit", [1, 2, 5, 7])
    async def test_the_cursor_covers_every_dataset_once(
        self, api: Api, dataset_factory: Callable[..., object], limit: int
    ) -> None:
        made = [dataset_factory(name=f"d{i}").id for i in range(4)]  # type: ignore[attr-defined]
        seen: list[str] = []
        cursor = None
        for _ in range(20):
            params: dict[str, str | int] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = (await api.get("/v1/datasets", params=params)).json()
            assert len(page["items"]) <= limit
            seen += [d["id"] for d in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == BUILTINS + made[::-1]

    async def test_a_bad_cursor_is_422(self, api: Api) -> None:
        r = await api.get("/v1/datasets", params={"cursor": "not-a-cursor"})
        assert r.status_code == 422
        assert "cursor" in r.json()["detail"]

    async def test_read_gives_the_same_resource_as_upload(self, api: Api, upload: Upload) -> None:
        created = (await upload("a.csv", csv_bytes())).json()
        assert (await api.get(f"/v1/datasets/{created['id']}")).json() == created


class TestDelete:
    async def test_delete_removes_the_row_and_its_files(
        self, api: Api, upload: Upload, tmp_path: Path
    ) -> None:
        ds = (await upload("a.csv", csv_bytes())).json()
        r = await api.delete(f"/v1/datasets/{ds['id']}")
        assert r.status_code == 204
        assert (await api.get(f"/v1/datasets/{ds['id']}")).status_code == 404
        assert store_files(tmp_path) == []

    async def test_shared_files_stay_until_the_last_row_goes(
        self, api: Api, upload: Upload, tmp_path: Path
    ) -> None:
        first = (await upload("a.csv", csv_bytes())).json()
        second = (await upload("b.csv", csv_bytes())).json()
        files = store_files(tmp_path)
        assert (await api.delete(f"/v1/datasets/{first['id']}")).status_code == 204
        assert store_files(tmp_path) == files
        assert (await api.delete(f"/v1/datasets/{second['id']}")).status_code == 204
        assert store_files(tmp_path) == []

    @pytest.mark.parametrize("status", [QUEUED, RUNNING])
    @pytest.mark.parametrize("field", ["dataset_id", "validation_dataset_id", "test_dataset_id"])
    async def test_409_while_a_job_that_has_not_ended_uses_it(
        self,
        api: Api,
        upload: Upload,
        job_factory: Callable[..., object],
        stored: Callable[[], Stored],
        status: str,
        field: str,
    ) -> None:
        ds = (await upload("a.csv", csv_bytes())).json()
        job = job_factory(status=status, **{field: ds["id"]})
        before = stored()
        r = await api.delete(f"/v1/datasets/{ds['id']}")
        assert r.status_code == 409
        assert job.id in r.json()["detail"]  # type: ignore[attr-defined]
        assert stored() == before
        assert (await api.get(f"/v1/datasets/{ds['id']}")).status_code == 200

    @pytest.mark.parametrize("status", [SUCCEEDED, FAILED, CANCELLED])
    async def test_a_terminal_job_does_not_hold_it(
        self, api: Api, upload: Upload, job_factory: Callable[..., object], status: str
    ) -> None:
        ds = (await upload("a.csv", csv_bytes())).json()
        job_factory(status=status, dataset_id=ds["id"])
        assert (await api.delete(f"/v1/datasets/{ds['id']}")).status_code == 204

    async def test_a_builtin_cannot_be_deleted(self, api: Api) -> None:
        r = await api.delete("/v1/datasets/digits")
        assert r.status_code == 409
        assert "built in" in r.json()["detail"]
        assert (await api.get("/v1/datasets/digits")).status_code == 200

    async def test_unknown_id_is_404(self, api: Api) -> None:
        assert (await api.delete("/v1/datasets/nope")).status_code == 404
