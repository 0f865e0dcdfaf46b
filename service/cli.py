"""The ``fitq`` command: start the parts, administer keys and the schema,
and drive the API from a terminal.

Errors the API answers with (4xx) print as one line on stderr and exit 1;
usage errors exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from service.client import ApiError, Client
from service.settings import Settings, get_settings

app = typer.Typer(help="fitq: train dense neural networks as a service.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys (admin; talks to the database directly).", no_args_is_help=True
)
datasets_app = typer.Typer(help="Upload and list datasets.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(datasets_app, name="datasets")

out = Console()
err = Console(stderr=True)

WORKER_STOP_GRACE_SECONDS = 30


def _settings() -> Settings:
    return get_settings()


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


# -- starting the parts ----------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from service.db import migrate

    settings = _settings()
    migrate.upgrade(settings.resolved_database_url)
    out.print(f"database at {migrate.head_revision()}")


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the REST API alone (uvicorn)."""
    from service.api.app import check_schema

    settings = _settings()
    try:
        check_schema(settings.resolved_database_url)
    except RuntimeError as exc:
        _fail(str(exc))
    _register_env_key(settings)
    _serve(host, port, settings)


@app.command()
def worker() -> None:
    """Run one worker: claim jobs and train them until SIGTERM/Ctrl-C."""
    from service import logs
    from worker.runner import Worker

    settings = _settings()
    logs.configure(settings.log_format)
    import torch

    torch.set_num_threads(settings.torch_threads())
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: leave now
            os._exit(130)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Worker(settings, stop=stop).run()


@app.command()
def up(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run everything on this machine: API, one worker, SQLite and a file store
    under ./.fitq (or $FITQ_HOME)."""
    from service.db import migrate

    settings = _settings()
    settings.home_path.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url)
    key_source = _ensure_local_key(settings)
    env = {**os.environ, "FITQ_HOME": str(settings.home_path)}
    # uvicorn re-raises the SIGTERM it caught once it has shut down; make that
    # an ordinary exit so the `finally` below still stops the worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    worker_proc = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env)
    err.print(
        f"fitq is up: http://{host}:{port}  (home {settings.home_path}; {key_source})",
        highlight=False,
    )
    try:
        _serve(host, port, settings)
    finally:
        worker_proc.send_signal(signal.SIGTERM)
        try:
            worker_proc.wait(WORKER_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            worker_proc.kill()


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def _serve(host: str, port: int, settings: Settings) -> None:
    import uvicorn

    from service import logs

    logs.configure(settings.log_format)
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level="info",
        log_config=None,  # logs.configure owns uvicorn's loggers: one format per process
    )


def _register_env_key(settings: Settings) -> None:
    if not settings.api_key:
        return
    from service import auth
    from service.db.engine import transaction

    with transaction(settings.resolved_database_url) as session:
        auth.ensure_key(session, "env", settings.api_key)


def _ensure_local_key(settings: Settings) -> str:
    """`fitq up`'s key: FITQ_API_KEY when set, else one created on first start
    and left in the home folder for the CLI."""
    from service import auth
    from service.db.engine import transaction

    if settings.api_key:
        _register_env_key(settings)
        return "key from FITQ_API_KEY"
    key_file = settings.local_key_file
    with transaction(settings.resolved_database_url) as session:
        if key_file.exists():
            auth.ensure_key(session, "local", key_file.read_text().strip())
            return f"key in {key_file}"
        key = auth.generate_key()
        auth.ensure_key(session, "local", key)
    key_file.touch(mode=0o600)
    key_file.write_text(key + "\n")
    return f"new key written to {key_file}"


# -- keys ---------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(name: str) -> None:
    """Create a key; print it alone on stdout (it is shown only once)."""
    from service import auth
    from service.db.engine import transaction
    from service.errors import FitqError

    try:
        with transaction(_settings().resolved_database_url) as session:
            key = auth.create_key(session, name)
    except FitqError as exc:
        _fail(exc.message)
    print(key)


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke the key named NAME."""
    from service import auth
    from service.db.engine import transaction
    from service.errors import FitqError

    try:
        with transaction(_settings().resolved_database_url) as session:
            auth.revoke_key(session, name)
    except FitqError as exc:
        _fail(exc.message)
    err.print(f"revoked {name}")


# -- the API from a terminal ----------------------------------------------------------


def _client() -> Client:
    settings = _settings()
    key = settings.api_key
    if not key and settings.local_key_file.exists():
        key = settings.local_key_file.read_text().strip()
    return Client(settings.api_url, key)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    import httpx

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        _fail(str(exc))
    except httpx.TransportError as exc:
        _fail(f"cannot reach fitq at {_settings().api_url}: {exc}")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


@datasets_app.command("upload")
def datasets_upload(
    path: Path,
    name: str | None = None,
    label: str | None = typer.Option(None, help="Target column (default: the last)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Upload a CSV/TSV, Parquet or NPZ file."""
    if not path.is_file():
        _fail(f"no such file: {path}", 2)
    with _client() as client:
        ds = _call(client.upload_dataset, path, name=name, label=label)
    if as_json:
        _print_json(ds)
    else:
        out.print(f"{ds['id']}  {ds['name']}  {ds['n_rows']} rows × {ds['n_features']} features")


@datasets_app.command("list")
def datasets_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List your datasets and the built-in ones."""
    with _client() as client:
        items = _call(client.datasets)
    if as_json:
        _print_json(items)
        return
    table = Table("id", "name", "format", "rows", "features", "task")
    for ds in items:
        task = ds.get("task") or {}
        table.add_row(
            ds["id"],
            ds["name"],
            ds["format"],
            str(ds["n_rows"]),
            str(ds["n_features"]),
            str(task.get("kind", "")),
        )
    out.print(table)


def _load_spec(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        _fail(f"no such file: {path}", 2)
    text = path.read_text()
    try:
        spec = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        _fail(
            f"{path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {exc}",
            2,
        )
    if not isinstance(spec, dict):
        _fail(f"{path} must hold a JSON object", 2)
    return spec


def _dataset_ref(client: Client, ref: str) -> str:
    """A dataset id as given, or the id of the file at that path once uploaded."""
    path = Path(ref)
    if path.is_file():
        return _call(client.upload_dataset, path)["id"]
    return ref


@app.command()
def submit(
    spec_file: Path,
    data: str | None = typer.Option(None, help="Training data: a file to upload, or a dataset id."),
    test: str | None = typer.Option(None, help="Test data: a file or a dataset id."),
    follow: bool = typer.Option(False, "--follow", help="Wait and show epochs as they finish."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Submit a job from a JSON or YAML spec."""
    spec = _load_spec(spec_file)
    with _client() as client:
        if data:
            spec["dataset_id"] = _dataset_ref(client, data)
        if test:
            spec["test_dataset_id"] = _dataset_ref(client, test)
        job = _call(client.submit, spec)
        if not follow:
            if as_json:
                _print_json(job)
            else:
                print(job["id"])
            return
        err.print(f"submitted {job['id']}")
        final = _follow(client, job["id"])
    if as_json:
        _print_json(final)
    if final["status"] != "succeeded":
        _fail(f"job {final['id']} {final['status']}: {final.get('error') or ''}".rstrip(": "))


def _follow(client: Client, job_id: str) -> dict[str, Any]:
    seen = 0
    while True:
        job = _call(client.job, job_id)
        for row in _call(client.metrics, job_id, after=seen):
            err.print(_epoch_line(row, job["progress"]["epochs"]), highlight=False)
            seen = row["epoch"]
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    values = "  ".join(
        f"{k} {v:.4f}"
        for k, v in row.items()
        if k not in ("epoch", "seconds", "samples_per_second") and isinstance(v, int | float)
    )
    return f"epoch {row['epoch']}/{epochs}  {values}  ({row.get('seconds', 0):.1f} s)"


@app.command()
def jobs(
    status: str | None = None,
    limit: int = 20,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List your jobs, newest first."""
    with _client() as client:
        items = _call(client.jobs, status, limit)
    if as_json:
        _print_json(items)
        return
    table = Table("id", "name", "status", "epoch", "loss", "accuracy", "created")
    for job in items:
        metrics = job.get("metrics") or {}
        table.add_row(
            job["id"],
            job.get("name") or "",
            job["status"],
            f"{job['progress']['epoch']}/{job['progress']['epochs']}",
            _fmt(metrics.get("loss")),
            _fmt(metrics.get("accuracy")),
            str(job["created_at"])[:19],
        )
    out.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else ""


@app.command()
def show(job_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one job: status, progress, metrics per epoch, test metrics."""
    with _client() as client:
        job = _call(client.job, job_id)
        history = _call(client.metrics, job_id)
    if as_json:
        _print_json({**job, "history": history})
        return
    p = job["progress"]
    out.print(
        f"[bold]{job['id']}[/bold] {job.get('name') or ''}  {job['status']}  "
        f"epoch {p['epoch']}/{p['epochs']}  attempt {job['attempt']}/{job['max_attempts']}"
    )
    if job.get("error"):
        out.print(f"[red]error:[/red] {job['error']}", highlight=False)
    if history:
        keys = [k for k in history[0] if k != "epoch"]
        table = Table("epoch", *keys)
        for row in history:
            table.add_row(str(row["epoch"]), *(_fmt(row.get(k)) for k in keys))
        out.print(table)
    if job.get("test_metrics"):
        out.print("test: " + "  ".join(f"{k} {_fmt(v)}" for k, v in job["test_metrics"].items()))


if __name__ == "__main__":
    app()
