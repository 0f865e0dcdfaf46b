"""A small Python client for fitq's REST API (httpx).

    client = Client("http://127.0.0.1:8000", api_key)
    ds = client.upload_dataset("digits.csv")
    job = client.submit({...spec..., "dataset_id": ds["id"]})
    client.wait(job["id"])

Every non-2xx answer raises :class:`ApiError` carrying the status and the
server's ``detail``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("succeeded", "failed", "cancelled")
DEFAULT_TIMEOUT_SECONDS = 60.0


class ApiError(Exception):
    def __init__(self, status_code: int, detail: Any):
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"{status_code}: {format_detail(detail)}")


def format_detail(detail: Any) -> str:
    """FastAPI's detail is a string, or a list of validation errors."""
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", []) if p != "body")
                parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    return str(detail)


class Client:
    def __init__(self, url: str, api_key: str | None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response

    # datasets
    def upload_dataset(
        self, path: str | Path, *, name: str | None = None, label: str | None = None
    ) -> dict[str, Any]:
        path = Path(path)
        form = {k: v for k, v in {"name": name, "label": label}.items() if v is not None}
        with path.open("rb") as fh:
            files = {"file": (path.name, fh, "application/octet-stream")}
            return self._request("POST", "/v1/datasets", data=form, files=files).json()

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._paginate("/v1/datasets"))

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/datasets/{dataset_id}").json()

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # jobs
    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/v1/jobs", json=spec, headers=headers).json()

    def jobs(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        items = []
        for item in self._paginate("/v1/jobs", params):
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
        return items

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def metrics(self, job_id: str, after: int | None = None) -> list[dict[str, Any]]:
        params = {"after": after} if after is not None else {}
        return self._request("GET", f"/v1/jobs/{job_id}/metrics", params=params).json()["epochs"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def download_model(self, job_id: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{job_id}/model").content

    def predict(self, job_id: str, inputs: list[list[float]]) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/predict", json={"inputs": inputs}).json()

    def wait(
        self, job_id: str, *, timeout: float | None = None, poll_seconds: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the job is terminal; return the final job resource."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll_seconds)

    def _paginate(
        self, path: str, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        params = dict(params or {})
        while True:
            page = self._request("GET", path, params=params).json()
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]
