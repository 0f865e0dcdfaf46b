"""``fitq submit|jobs|show|watch|cancel|download|predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from fitq.service.cli.common import (
    EXIT_FOR_STATUS,
    EXIT_USAGE,
    JsonOption,
    call,
    client,
    err,
    fail,
    fmt,
    out,
    print_json,
)
from fitq.service.client import PREDICT_BATCH_ROWS, Client

NOT_METRICS = ("job_id", "at", "epoch", "attempt", "seconds", "samples_per_second")


def register(app: typer.Typer) -> None:
    for command in (submit, jobs, show, watch, cancel, delete, download, predict):
        app.command()(command)


# -- submit ---------------------------------------------------------------------------


def submit(
    spec_file: Annotated[Path, typer.Argument(help="The job spec, JSON or YAML.")],
    data: str | None = typer.Option(None, help="Training data: a file to upload, or a dataset id."),
    validation: str | None = typer.Option(None, help="Validation data: a file or a dataset id."),
    test: str | None = typer.Option(None, help="Test data: a file or a dataset id."),
    tag: Annotated[
        list[str] | None, typer.Option(help="A tag, after the spec's own (repeat it).")
    ] = None,
    follow: bool = typer.Option(False, "--follow", "-f", help="Watch it until it ends."),
    as_json: bool = JsonOption,
) -> None:
    """Submit a job; print its id (with --follow, watch it; the exit code tells how it ended)."""
    spec = load_spec(spec_file)
    if tag:
        given = spec.get("tags")
        spec["tags"] = [*(given if isinstance(given, list) else []), *tag]
    with client() as c:
        for field, ref in (
            ("dataset_id", data),
            ("validation_dataset_id", validation),
            ("test_dataset_id", test),
        ):
            if ref:
                spec[field] = dataset_ref(c, ref)
        job = call(c.submit, spec)
        if not follow:
            if as_json:
                print_json(dict(job))
            else:
                print(job.id)
            return
        err.print(f"submitted {job.id}", highlight=False)
        _watch(c, job.id, as_json)


def load_spec(path: Path, *, what: str = "the job spec") -> dict[str, Any]:
    """The object in the JSON or YAML file at ``path`` (exit 2 when it is not one)."""
    import yaml

    if not path.is_file():
        fail(f"no such file: {path}", EXIT_USAGE)
    is_yaml = path.suffix in (".yaml", ".yml")
    try:
        spec = yaml.safe_load(path.read_text()) if is_yaml else json.loads(path.read_text())
    except (ValueError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"{path} is not valid {'YAML' if is_yaml else 'JSON'}: {reason}", EXIT_USAGE)
    if not isinstance(spec, dict):
        fail(f"{path} must hold an object ({what})", EXIT_USAGE)
    return spec


def dataset_ref(c: Client, ref: str) -> str:
    """A dataset id as given, or the id of the file at that path once uploaded."""
    path = Path(ref)
    if path.is_file():
        return str(call(c.upload_dataset, path)["id"])
    return ref


# -- read -----------------------------------------------------------------------------


def jobs(
    status: Annotated[
        list[str] | None,
        typer.Option(help="queued, running, succeeded, failed, cancelled (repeat: any of them)."),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="Only jobs with this tag (repeat: all).")
    ] = None,
    name: str | None = typer.Option(None, help="This name; ending with '*', a prefix."),
    sweep: str | None = typer.Option(None, help="Only this sweep's trials."),
    since: str | None = typer.Option(
        None, help="Created at or after (ISO 8601 with a zone: 2026-12-06T00:00Z)."
    ),
    until: str | None = typer.Option(None, help="Created before (ISO 8601 with a zone)."),
    sort: str | None = typer.Option(
        None,
        help="created_at, or a metric of the latest epoch: val_loss (ascending), "
        "-val_accuracy (descending). Default: newest first.",
    ),
    limit: int = typer.Option(20, help="At most this many."),
    as_json: bool = JsonOption,
) -> None:
    """Your jobs, newest first (or --sort), filtered by --status, --tag, --name, --sweep,
    --since and --until."""
    with client() as c:
        items = call(
            c.jobs,
            status,
            limit,
            tag=tag,
            name=name,
            sweep=sweep,
            sort=sort,
            created_after=since,
            created_before=until,
        )
    if as_json:
        print_json(items)
        return
    metric = (sort or "").lstrip("-")
    shown = ["loss", "accuracy", "val_accuracy"]
    if metric and metric != "created_at" and metric not in shown:
        shown.append(metric)
    table = Table(
        Column("id", no_wrap=True, min_width=32),
        "name",
        "status",
        "epoch",
        *shown,
        "tags",
        "created",
    )
    for job in items:
        metrics = job.get("metrics") or {}
        table.add_row(
            job["id"],
            job.get("name") or "",
            _status(job),
            f"{job['progress']['epoch']}/{job['progress']['epochs']}",
            *(fmt(metrics.get(m)) for m in shown),
            " ".join(job.get("tags") or []),
            str(job["created_at"])[:19],
        )
    out.print(table)


def show(job_id: str, as_json: bool = JsonOption) -> None:
    """One job: status, progress, status history, metrics per epoch, test metrics."""
    with client() as c:
        job = call(c.job, job_id)
        history = call(c.epochs, job_id)
    if as_json:
        print_json({**job, "history": history})
        return
    p = job["progress"]
    eta = f"  eta {job['eta_seconds']:.0f} s" if job.get("eta_seconds") is not None else ""
    out.print(
        f"[bold]{job['id']}[/bold] {job.get('name') or ''}  {_status(job)}  "
        f"epoch {p['epoch']}/{p['epochs']}  attempt {job['attempt']}/{job['max_attempts']}{eta}",
        highlight=False,
    )
    changes = ", ".join(
        f"{h['status']} {str(h['at'])[11:19]}" for h in job.get("status_history") or []
    )
    if changes:
        out.print(f"history: {changes}", highlight=False)
    if job.get("pack"):
        out.print(
            f"trained in a pack of {job['pack']['size']} (pack {job['pack']['id']})",
            highlight=False,
        )
    if job.get("sweep_id"):
        out.print(f"a trial of sweep {job['sweep_id']}", highlight=False)
    if job.get("tags"):
        out.print("tags: " + " ".join(job["tags"]), highlight=False, markup=False)
    if job.get("error"):
        out.print(f"[red]error:[/red] {job['error']}", highlight=False)
    _summary(job, history)


def _status(job: dict[str, Any]) -> str:
    phase = job.get("phase")
    return f"{job['status']} ({phase.replace('_', ' ')})" if phase else job["status"]


def _summary(job: dict[str, Any], history: list[dict[str, Any]]) -> None:
    if history:
        keys = [k for k in history[0] if k not in ("epoch", "samples_per_second")]
        table = Table("epoch", *keys, title=f"job {job['id']}: {job['status']}")
        for row in history:
            table.add_row(str(row["epoch"]), *(fmt(row.get(k)) for k in keys))
        out.print(table)
    if job.get("test_metrics"):
        out.print("test: " + "  ".join(f"{k} {fmt(v)}" for k, v in job["test_metrics"].items()))


# -- watch ----------------------------------------------------------------------------


def watch(job_id: str, as_json: bool = JsonOption) -> None:
    """Follow a job live (epochs, steps, loss and accuracy), then summarize it.
    With --json, one event per line. Exit code: 0 succeeded, 4 failed, 5 cancelled."""
    with client() as c:
        _watch(c, job_id, as_json)


def _watch(c: Client, job_id: str, as_json: bool) -> None:
    call(_json_lines if as_json else _live_view, c, job_id)
    job = call(c.job, job_id)
    if not as_json:
        _summary(job, call(c.epochs, job_id))
        if job.get("error"):
            err.print(f"[red]error:[/red] {job['error']}", highlight=False)
    if job["status"] != "succeeded":
        err.print(f"job {job_id} {job['status']}", highlight=False)
    raise typer.Exit(EXIT_FOR_STATUS.get(job["status"], 1))


def _json_lines(c: Client, job_id: str) -> None:
    for event in c.events(job_id):
        print(json.dumps({"event": event.kind, "id": event.id, **event.data}), flush=True)


def _live_view(c: Client, job_id: str) -> None:
    """A rich progress display: one bar for epochs, one for the steps of the current one."""
    job = c.job(job_id)
    epochs = job["progress"]["epochs"]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bars:
        epoch_bar = bars.add_task("epochs", total=epochs, info=job["status"])
        step_bar = bars.add_task("steps ", total=job["progress"]["steps"] or 1, info="")
        done = len(c.epochs(job_id))
        bars.update(epoch_bar, completed=done)
        for event in c.events(job_id):
            data = event.data
            if event.kind == "progress":
                bars.update(
                    step_bar,
                    total=data.get("steps") or 1,
                    completed=data.get("step") or 0,
                    description=f"epoch {data.get('epoch')}",
                )
                eta = data.get("eta_seconds")
                bars.update(
                    epoch_bar,
                    info=_status(data) + (f"  eta {eta:.0f} s" if eta is not None else ""),
                )
            elif event.kind == "epoch":
                metrics = "  ".join(
                    f"{k} {fmt(v)}" for k, v in data.items() if k not in NOT_METRICS
                )
                bars.update(epoch_bar, completed=data["epoch"], info=metrics)
                bars.update(step_bar, completed=bars.tasks[step_bar].total)
            elif event.kind in ("status", "phase"):
                bars.update(epoch_bar, info=str(data.get("status") or data.get("phase")))


# -- act --------------------------------------------------------------------------------


def cancel(job_id: str, as_json: bool = JsonOption) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    with client() as c:
        job = call(c.cancel, job_id)
    if as_json:
        print_json(job)
    else:
        note = " (stopping at the next step)" if job["status"] == "running" else ""
        out.print(f"{job['id']} {job['status']}{note}", highlight=False)


def delete(job_id: str) -> None:
    """Delete a job that ended, with its History and files (cancel a running one first)."""
    with client() as c:
        call(c.delete_job, job_id)
    err.print(f"deleted {job_id}", highlight=False)


def download(
    job_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: JOB_ID.safetensors.")
    ] = None,
) -> None:
    """Download the trained model (safetensors)."""
    with client() as c:
        data = call(c.download_model, job_id)
    path = output or Path(f"{job_id}.safetensors")
    path.write_bytes(data)
    err.print(f"wrote {path} ({len(data)} bytes)", highlight=False)


def predict(
    job_id: str,
    file: Annotated[Path, typer.Argument(help="CSV (header optional) or NPZ (array x).")],
    as_json: bool = JsonOption,
) -> None:
    """Predict the rows of FILE: one prediction per line (--json: probabilities too)."""
    with client() as c:
        job = call(c.job, job_id)
        n_features = int(job["spec"]["model"]["input_dim"])
        label = call(c.dataset, job["dataset_id"]).get("label")
        x = _read_rows(file, n_features, label)
        predictions: list[Any] = []
        probabilities: list[Any] = []
        for start in range(0, len(x), PREDICT_BATCH_ROWS):
            answer = call(c.predict, job_id, x[start : start + PREDICT_BATCH_ROWS].tolist())
            predictions += answer["predictions"]
            probabilities += answer.get("probabilities") or []
    if as_json:
        print_json({"predictions": predictions, "probabilities": probabilities or None})
        return
    for value in predictions:
        print(value)


def _read_rows(path: Path, n_features: int, label: str | None) -> np.ndarray:
    """The feature rows of a CSV or NPZ file, the label column dropped when the
    header names it (so the training CSV itself can be given)."""
    if not path.is_file():
        fail(f"no such file: {path}", EXIT_USAGE)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                name = "x" if "x" in npz.files else npz.files[0]
                x = np.asarray(npz[name], dtype=np.float64)
        else:
            x = _read_csv(path, label)
    except (ValueError, OSError, IndexError) as exc:
        fail(f"cannot read {path}: {exc}", EXIT_USAGE)
    if x.ndim == 1:
        x = x[None, :]
    if x.shape[1] != n_features:
        fail(f"{path} has {x.shape[1]} feature columns; the model takes {n_features}", EXIT_USAGE)
    return x


def _read_csv(path: Path, label: str | None) -> np.ndarray:
    delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    lines = path.read_text().splitlines()
    first = [cell.strip() for cell in lines[0].split(delimiter)]
    try:
        [float(cell) for cell in first]
        header: list[str] | None = None
    except ValueError:
        header = first
    x = np.loadtxt(path, delimiter=delimiter, skiprows=1 if header else 0, ndmin=2)
    if header and label in header:
        x = np.delete(x, header.index(label), axis=1)
    return x
