"""The ``fitq`` command: the parts it starts (``up``, ``api``, ``worker``), the
admin commands (``db``, ``keys``: ``admin.py``; ``store gc``: ``store.py``) and
the user commands that drive the API (``jobs.py``, ``sweeps.py``, ``datasets.py``).

Errors the API answers with (4xx) print as one line on stderr and exit 1;
usage errors exit 2; the full list of exit codes is in ``common.py``. Whatever
needs the server's extras (uvicorn, the database, torch) is imported inside
the command that uses it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import typer

from fitq.service.cli import compare, jobs, login, sweeps
from fitq.service.cli.admin import db_app, ensure_local_key, keys_app, register_env_key
from fitq.service.cli.common import chosen, err, fail
from fitq.service.cli.datasets import datasets_app
from fitq.service.cli.store import store_app
from fitq.service.settings import Settings, get_settings

app = typer.Typer(help="fitq: train dense neural networks as a service.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(datasets_app, name="datasets")
app.add_typer(store_app, name="store")
jobs.register(app)
compare.register(app)
sweeps.register(app)
login.register(app)


def _print_version(value: bool) -> None:
    if value:
        from fitq import __version__

        print(f"fitq {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    url: str = typer.Option(
        None, "--url", help="The fitq server (before FITQ_API_URL and `fitq login`'s)."
    ),
    api_key: str = typer.Option(
        None, "--api-key", help="The API key (before FITQ_API_KEY and `fitq login`'s)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """fitq: train dense neural networks as a service."""
    chosen["url"], chosen["api_key"] = url, api_key


WORKER_STOP_GRACE_SECONDS = 30


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the REST API alone (uvicorn)."""
    from fitq.service.api.app import check_schema

    settings = get_settings()
    try:
        check_schema(settings.resolved_database_url)
    except RuntimeError as exc:
        fail(str(exc))
    register_env_key(settings)
    _serve(host, port, settings)


@app.command()
def worker() -> None:
    """Run one worker: claim jobs and train them until SIGTERM/Ctrl-C."""
    from fitq.worker import runner

    runner.serve(get_settings())


@app.command()
def up(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run everything on this machine: API, one worker, SQLite and a file store
    under ./.fitq (or $FITQ_HOME)."""
    from fitq.service.db import migrate

    settings = get_settings()
    settings.home_path.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url)
    key_source = ensure_local_key(settings)
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
