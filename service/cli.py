"""The ``fitq`` command: start the parts, administer keys and the schema,
and drive the API from a terminal (the user commands live in
``service/cli_jobs.py`` and ``service/cli_datasets.py``).

Errors the API answers with (4xx) print as one line on stderr and exit 1;
usage errors exit 2; the full list of exit codes is in ``service/cli_common.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

import typer
from rich.console import Console

from fitq.service import cli_jobs
from fitq.service.cli_datasets import datasets_app
from fitq.service.settings import Settings, get_settings

app = typer.Typer(help="fitq: train dense neural networks as a service.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys (admin; talks to the database directly).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(datasets_app, name="datasets")
cli_jobs.register(app)

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
    from fitq.service.db import migrate

    settings = _settings()
    migrate.upgrade(settings.resolved_database_url)
    out.print(f"database at {migrate.head_revision()}")


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the REST API alone (uvicorn)."""
    from fitq.service.api.app import check_schema

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
    from fitq.service import logs
    from fitq.worker.faults import Faults
    from fitq.worker.runner import Worker

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
    # Faults.from_env: the fault-injection tests' hooks (FITQ_TEST_*), unset in production.
    Worker(settings, stop=stop, faults=Faults.from_env(os.environ)).run()


@app.command()
def up(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run everything on this machine: API, one worker, SQLite and a file store
    under ./.fitq (or $FITQ_HOME)."""
    from fitq.service.db import migrate

    settings = _settings()
    settings.home_path.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url)
    key_source = _ensure_local_key(settings)
    env = {**os.environ, "FITQ_HOME": str(settings.home_path)}
    # uvicorn re-raises the SIGTERM it caught once it has shut down; make that
    # an ordinary exit so the `finally` below still stops the worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    worker_proc = subprocess.Popen([sys.executable, "-m", "fitq.service.cli", "worker"], env=env)
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

    from fitq.service import logs

    logs.configure(settings.log_format)
    uvicorn.run(
        "fitq.service.api.app:served_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.api_processes,
        log_level="info",
        log_config=None,  # logs.configure owns uvicorn's loggers: one format per process
    )


def _register_env_key(settings: Settings) -> None:
    if not settings.api_key:
        return
    from fitq.service import auth
    from fitq.service.db.engine import transaction

    with transaction(settings.resolved_database_url) as session:
        auth.ensure_key(session, "env", settings.api_key)


def _ensure_local_key(settings: Settings) -> str:
    """`fitq up`'s key: FITQ_API_KEY when set, else one created on first start
    and left in the home folder for the CLI."""
    from fitq.service import auth
    from fitq.service.db.engine import transaction

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
    from fitq.service import auth
    from fitq.service.db.engine import transaction
    from fitq.service.errors import FitqError

    try:
        with transaction(_settings().resolved_database_url) as session:
            key = auth.create_key(session, name)
    except FitqError as exc:
        _fail(exc.message)
    print(key)


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke the key named NAME."""
    from fitq.service import auth
    from fitq.service.db.engine import transaction
    from fitq.service.errors import FitqError

    try:
        with transaction(_settings().resolved_database_url) as session:
            auth.revoke_key(session, name)
    except FitqError as exc:
        _fail(exc.message)
    err.print(f"revoked {name}")


if __name__ == "__main__":
    app()
