"""The :class:`Client`: one method per endpoint of the API, and ``fit``, which
runs Keras' ``model.fit`` on fitq (upload, submit, follow, History) for a spec or a
compiled Keras model."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from fitq.service.client import bodies, config
from fitq.service.client.errors import JobFailed, raise_for
from fitq.service.client.events import ServerEvent, parse_sse
from fitq.service.client.job import History, Job, history_of
from fitq.service.client.resource import TERMINAL
from fitq.service.client.sweep import Sweep, goal_of

DEFAULT_TIMEOUT_SECONDS = 60.0
RECONNECT_SECONDS = 1.0
"""Wait before reconnecting a dropped event stream."""
MAX_RECONNECTS = 30
MAX_PAGE = 200
"""The API's largest page."""


class Client:
    """fitq's API over HTTP. ``url`` and ``api_key`` left out are found as
    ``config.py`` says: ``FITQ_API_URL``/``FITQ_API_KEY``, then the file ``fitq
    login`` wrote, then the key ``fitq up`` left (``./.fitq`` or ``$FITQ_HOME``)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ):
        found = config.resolve(url, api_key)
        headers = {"Authorization": f"Bearer {found.api_key}"} if found.api_key else {}
        self.url = found.url
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        raise_for(response)
        return response

    # -- Keras-flavoured ---------------------------------------------------------

    def fit(
        self,
        spec: dict[str, Any] | Any,
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
        tags: list[str] | None = None,
    ) -> History:
        """Keras' ``model.fit`` on fitq: upload ``x, y`` (arrays, or ``x`` a
        dataset file or id), submit ``spec`` (``model`` and ``compile``; or a
        compiled Keras model, sent as its JSON and compile config) with the fit
        arguments given, follow it (``verbose=1`` prints each epoch), and return
        its History. ``name`` and ``tags`` label the job (``client.jobs(tag=…)``
        finds it again). ``test_data`` is evaluated after the last epoch
        (``history.job.test_metrics``)."""
        body = bodies.spec_of(spec)
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
        if tags is not None:
            body["tags"] = list(tags)
        body["dataset_id"] = self._dataset_id(x, y)
        if validation_data is not None:
            body["validation_dataset_id"] = self._dataset_id(*validation_data)
        if test_data is not None:
            body["test_dataset_id"] = self._dataset_id(*test_data)
        job = self.submit(body)
        job.wait(progress=verbose > 0)
        if job.status != "succeeded":
            raise JobFailed(job)
        rows = self.epochs(job.id)
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
            content = bodies.npz_bytes(data, y)
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

    def jobs(
        self,
        status: str | Sequence[str] | None = None,
        limit: int | None = None,
        *,
        sweep: str | None = None,
        tag: str | Sequence[str] | None = None,
        name: str | None = None,
        sort: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Your jobs (at most ``limit``), newest first unless ``sort`` says
        otherwise: ``"created_at"``, or a metric of the latest epoch (``"val_loss"``
        ascending, ``"-val_accuracy"`` descending; jobs without it last). Filters:
        any of ``status``, every one of ``tag``, ``name`` exactly (ending with
        ``*``: by prefix), a ``sweep``'s trials, created in ``[created_after,
        created_before)`` (aware datetimes or ISO 8601 text with a zone)."""
        params: dict[str, Any] = {
            "status": bodies.listed(status),
            "tag": bodies.listed(tag),
            "name": name,
            "sweep_id": sweep,
            "sort": sort,
            "created_after": bodies.instant(created_after, "created_after"),
            "created_before": bodies.instant(created_before, "created_before"),
        }
        params = {k: v for k, v in params.items() if v not in (None, [])}
        if limit is not None:
            params["limit"] = max(1, min(limit, MAX_PAGE))
        items = []
        for item in self._paginate("/v1/jobs", params):
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
        return items

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def epochs(self, job_id: str, after: int | None = None) -> list[dict[str, Any]]:
        """The job's History: one row per finished epoch (after ``after``, when given)."""
        params = {"after": after} if after is not None else {}
        return self._request("GET", f"/v1/jobs/{job_id}/metrics", params=params).json()["epochs"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def delete_job(self, job_id: str) -> None:
        """Delete a job that ended, with its History and files (409 while it runs)."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def download_model(self, job_id: str, format: str = "safetensors") -> bytes:
        """The trained model file: ``safetensors``, ``keras`` or ``onnx``."""
        params = {"format": format}
        return self._request("GET", f"/v1/jobs/{job_id}/model", params=params).content

    def evaluate(self, job_id: str, dataset_id: str) -> dict[str, float]:
        """Keras' evaluate of the job's trained model on a stored dataset."""
        body = {"dataset_id": dataset_id}
        return self._request("POST", f"/v1/jobs/{job_id}/evaluate", json=body).json()["metrics"]

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
                        raise_for(response)
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

    # -- sweeps ------------------------------------------------------------------------

    def sweep(
        self,
        spec: dict[str, Any],
        parameters: dict[str, Any],
        *,
        metric: str | dict[str, str] = "val_loss",
        method: str = "grid",
        max_trials: int | None = None,
        seed: int | None = None,
        early_terminate: dict[str, Any] | None = None,
        dataset: str | Path | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
    ) -> Sweep:
        """Run variants of ``spec``: ``parameters`` maps dotted paths to
        ``{"values": [...]}`` (or, for ``method="random"``, a distribution), and
        ``metric`` ranks them (a History name, its goal inferred as Keras Tuner
        does: ``maximize`` for accuracy-like names; or ``{"name", "goal"}``).
        ``early_terminate``: ``{"type": "asha", "min_epochs": …, "reduction_factor": …}``.
        ``dataset``: an id, or a file to upload. ``tags`` go on the sweep and on
        every trial (``client.jobs(tag=…)`` finds them). Returns the :class:`Sweep`."""
        if isinstance(metric, str):
            metric = {"name": metric, "goal": goal_of(metric)}
        body: dict[str, Any] = {
            "spec": spec if dataset is None else {**spec, "dataset_id": self._dataset_id(dataset)},
            "method": method,
            "parameters": parameters,
            "metric": metric,
        }
        optional = {
            "name": name,
            "tags": tags,
            "max_trials": max_trials,
            "seed": seed,
            "early_terminate": early_terminate,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self.create_sweep(body)

    def create_sweep(self, body: dict[str, Any]) -> Sweep:
        """``POST /v1/sweeps`` with ``body`` as it is."""
        return Sweep(self, self._request("POST", "/v1/sweeps", json=body).json())

    def get_sweep(self, sweep_id: str) -> Sweep:
        return Sweep(self, self.read_sweep(sweep_id))

    def read_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/sweeps/{sweep_id}").json()

    def sweeps(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Your sweeps, newest first."""
        items = []
        for item in self._paginate("/v1/sweeps"):
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
        return items

    def sweep_trials(self, sweep_id: str) -> list[dict[str, Any]]:
        """A sweep's trials, best first."""
        return list(self._paginate(f"/v1/sweeps/{sweep_id}/trials", {"limit": 200}))

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/sweeps/{sweep_id}/cancel").json()

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
