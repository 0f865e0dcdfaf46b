"""fitq's Python client (httpx), Keras-flavoured.

    from fitq.service.client import Client

    client = Client("http://127.0.0.1:8000", api_key)
    history = client.fit(spec, x_train, y_train, epochs=10, validation_split=0.1)
    history.history["loss"]          # as Keras' History.history
    job = history.job
    job.predict(x_test)              # probabilities (classification) or values
    job.download("model.safetensors")

Or step by step: ``client.upload_dataset(x, y)`` (arrays, sent as NPZ) or
``client.upload_dataset("digits.csv")``; ``job = client.submit(spec,
dataset=…)``; ``job.wait(progress=True)``; ``job.history``.

Every non-2xx answer raises :class:`ApiError` carrying the status and the
server's ``detail``; a job that ends failed or cancelled raises
:class:`JobFailed` from ``fit`` (``wait`` returns it as it is).
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np

TERMINAL = ("succeeded", "failed", "cancelled")
DEFAULT_TIMEOUT_SECONDS = 60.0
RECONNECT_SECONDS = 1.0
"""Wait before reconnecting a dropped event stream."""
MAX_RECONNECTS = 30
PREDICT_BATCH_ROWS = 5000
"""Rows per predict call (the server caps a call at FITQ_MAX_PREDICT_ROWS)."""
NON_METRICS = ("epoch", "seconds", "samples_per_second")


class ApiError(Exception):
    def __init__(self, status_code: int, detail: Any):
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"{status_code}: {format_detail(detail)}")


class JobFailed(Exception):
    """A job that ended failed or cancelled (``fit`` raises it)."""

    def __init__(self, job: Job):
        self.job = job
        super().__init__(f"job {job.id} {job['status']}: {job.get('error') or ''}".rstrip(": "))


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


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event: ``kind`` is status, phase, epoch or progress."""

    kind: str
    data: dict[str, Any]
    id: int | None = None


@dataclass
class History:
    """What ``Client.fit`` returns, shaped as Keras' ``History``."""

    history: dict[str, list[float]]
    epoch: list[int]
    job: Job
    params: dict[str, Any] = field(default_factory=dict)


class Job(Mapping[str, Any]):
    """A job resource (read it as a dict: ``job["status"]``) with its actions."""

    def __init__(self, client: Client, data: dict[str, Any]):
        self._client = client
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self._data.get('status')}>"

    @property
    def id(self) -> str:
        return str(self._data["id"])

    @property
    def status(self) -> str:
        return str(self._data["status"])

    @property
    def test_metrics(self) -> dict[str, float] | None:
        return self._data.get("test_metrics")

    def refresh(self) -> Job:
        self._data = self._client.job(self.id)
        return self

    def wait(
        self, progress: bool = False, *, timeout: float | None = None, out: TextIO | None = None
    ) -> Job:
        """Follow the job's event stream until it ends; with ``progress``, print
        each epoch as Keras' ``fit(verbose=2)`` does. Returns the job, refreshed."""
        stream = out or sys.stdout
        deadline = None if timeout is None else time.monotonic() + timeout
        epochs = self._data.get("progress", {}).get("epochs")
        for event in self._client.events(self.id):
            if event.kind == "progress":
                epochs = event.data.get("epochs", epochs)
            if progress and event.kind == "epoch":
                print(keras_line({**event.data, "epochs": epochs}), file=stream, flush=True)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} did not end within {timeout} s")
        return self.refresh()

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras' ``History.history``: each metric's list of per-epoch values."""
        return history_of(self._client.metrics(self.id))

    def download(self, path: str | Path | None = None) -> bytes:
        """The trained model (safetensors); also written to ``path`` when given."""
        data = self._client.download_model(self.id)
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def predict(self, x: Any) -> np.ndarray:
        """As Keras' ``model.predict``: per row, the class probabilities
        (classification) or the predicted values (regression)."""
        rows = np.asarray(x, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        outputs = []
        for start in range(0, len(rows), PREDICT_BATCH_ROWS):
            answer = self._client.predict(
                self.id, rows[start : start + PREDICT_BATCH_ROWS].tolist()
            )
            outputs.append(np.asarray(answer.get("probabilities") or answer["predictions"]))
        return np.concatenate(outputs)

    def cancel(self) -> Job:
        self._data = self._client.cancel(self.id)
        return self


def history_of(epochs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``GET /v1/jobs/{id}/metrics`` rows → ``{"loss": [...], "accuracy": [...], …}``."""
    history: dict[str, list[float]] = {}
    for row in epochs:
        for key, value in row.items():
            if key not in NON_METRICS and value is not None:
                history.setdefault(key, []).append(value)
    return history


def keras_line(epoch: dict[str, Any]) -> str:
    """``Epoch 3/10 - 0.4s - loss: 0.2100 - accuracy: 0.9400`` (Keras' verbose=2 line)."""
    metrics = " - ".join(
        f"{k}: {v:.4f}"
        for k, v in epoch.items()
        if k not in (*NON_METRICS, "job_id", "at", "attempt", "epochs")
        and isinstance(v, int | float)
    )
    total = f"/{epoch['epochs']}" if epoch.get("epochs") else ""
    return f"Epoch {epoch['epoch']}{total} - {epoch.get('seconds', 0):.1f}s - {metrics}"


def npz_bytes(x: Any, y: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.asarray(x, dtype=np.float32), y=np.asarray(y))
    return buffer.getvalue()


def parse_sse(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Server-Sent Events from text lines (comments and ``retry:`` skipped)."""
    kind, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield ServerEvent(kind, json.loads("\n".join(data)), event_id)
            kind, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id" and value.isdigit():
                event_id = int(value)


class Client:
    def __init__(self, url: str, api_key: str | None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response

    # -- Keras-flavoured ---------------------------------------------------------

    def fit(
        self,
        spec: dict[str, Any],
        x: Any,
        y: Any = None,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        validation_split: float | None = None,
        validation_data: tuple[Any, Any] | None = None,
        test_data: tuple[Any, Any] | None = None,
        shuffle: bool | None = None,
        verbose: int = 1,
        name: str | None = None,
    ) -> History:
        """Keras' ``model.fit`` on fitq: upload ``x, y`` (arrays, or ``x`` a
        dataset file or id), submit ``spec`` (``model`` and ``compile``, as in
        SPEC §2) with the fit arguments given, follow it (``verbose=1`` prints
        each epoch), and return its History. ``test_data`` is evaluated after
        the last epoch (``history.job.test_metrics``)."""
        body = json.loads(json.dumps(spec))  # a copy the caller's dict never sees
        fit = body.setdefault("fit", {})
        for key, value in {
            "epochs": epochs,
            "batch_size": batch_size,
            "validation_split": validation_split,
            "shuffle": shuffle,
        }.items():
            if value is not None:
                fit[key] = value
        if name is not None:
            body["name"] = name
        body["dataset_id"] = self._dataset_id(x, y)
        if validation_data is not None:
            body["validation_dataset_id"] = self._dataset_id(*validation_data)
        if test_data is not None:
            body["test_dataset_id"] = self._dataset_id(*test_data)
        job = self.submit(body)
        job.wait(progress=verbose > 0)
        if job.status != "succeeded":
            raise JobFailed(job)
        rows = self.metrics(job.id)
        return History(
            history=history_of(rows),
            epoch=[row["epoch"] - 1 for row in rows],  # Keras counts from 0
            job=job,
            params={"epochs": job["progress"]["epochs"], "steps": job["progress"]["steps"]},
        )

    def _dataset_id(self, x: Any, y: Any = None) -> str:
        if y is None and isinstance(x, str | Path) and not Path(x).is_file():
            return str(x)  # a dataset id (a built-in's name, or an upload's id)
        return str(self.upload_dataset(x, y)["id"])

    # -- datasets ------------------------------------------------------------------

    def upload_dataset(
        self,
        data: str | Path | Any,
        y: Any = None,
        *,
        name: str | None = None,
        label: str | None = None,
        task: str | None = None,
    ) -> dict[str, Any]:
        """Upload a file (CSV/TSV, Parquet, NPZ), or arrays ``x, y`` (sent as NPZ)."""
        form = {
            k: v for k, v in {"name": name, "label": label, "task": task}.items() if v is not None
        }
        if y is not None:
            content = npz_bytes(data, y)
            arrays = {"file": (f"{name or 'arrays'}.npz", content, "application/octet-stream")}
            return self._request("POST", "/v1/datasets", data=form, files=arrays).json()
        path = Path(data)
        with path.open("rb") as fh:
            upload = {"file": (path.name, fh, "application/octet-stream")}
            return self._request("POST", "/v1/datasets", data=form, files=upload).json()

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._paginate("/v1/datasets"))

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/datasets/{dataset_id}").json()

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # -- jobs ------------------------------------------------------------------------

    def submit(
        self,
        spec: dict[str, Any],
        *,
        dataset: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue ``spec`` (on ``dataset``, an id, when given); the job as a :class:`Job`."""
        body = {**spec, "dataset_id": dataset} if dataset is not None else spec
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job(self, self._request("POST", "/v1/jobs", json=body, headers=headers).json())

    def get_job(self, job_id: str) -> Job:
        return Job(self, self.job(job_id))

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

    def events(self, job_id: str, *, last_event_id: int | None = None) -> Iterator[ServerEvent]:
        """The job's live events until its terminal one, reconnecting (with
        ``Last-Event-ID``) when the connection drops: none missed, none twice."""
        reconnects = 0
        while True:
            headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
            try:
                with self._http.stream(
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(self._http.timeout.connect, read=None),
                ) as response:
                    if response.status_code == 204:
                        return
                    if response.status_code >= 400:
                        response.read()
                        _raise_for(response)
                    for event in parse_sse(response.iter_lines()):
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
                        if event.kind == "status" and event.data.get("status") in TERMINAL:
                            return
                    reconnects = 0
            except (httpx.TransportError, httpx.RemoteProtocolError):
                reconnects += 1
                if reconnects > MAX_RECONNECTS:
                    raise
            time.sleep(RECONNECT_SECONDS)

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


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiError(response.status_code, detail)
