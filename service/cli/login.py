"""``fitq login [URL]`` and ``fitq logout``: the per-user file (``client/config.py``)
that lets the CLI and ``Client()`` find a server and key from any directory, as
``gh auth login`` or ``docker login`` do."""

from __future__ import annotations

import sys

import typer

from fitq.service.cli.common import EXIT_UNREACHABLE, EXIT_USAGE, err, fail, resolved
from fitq.service.client import ApiError, Client, config


def login(
    url: str = typer.Argument(
        None, help="The fitq server; default FITQ_API_URL, the stored one, or the local one."
    ),
    key: str = typer.Option(
        None, "--key", help="The API key; default: prompted for, or read from stdin if piped."
    ),
) -> None:
    """Check a key against a server and store both for this user (mode 0600)."""
    import httpx

    server = url or resolved().url
    api_key = (key or _read_key()).strip()
    if not api_key:
        fail("no key given", EXIT_USAGE)
    try:
        with Client(server, api_key) as c:
            c.jobs(limit=1)
    except ApiError as exc:
        if exc.status_code == 401:
            fail(f"{server} refused this key (401); nothing was stored")
        fail(f"{server} answered {exc}; nothing was stored")
    except httpx.TransportError as exc:
        fail(f"cannot reach fitq at {server}: {exc}", EXIT_UNREACHABLE)
    path = config.save(server, api_key)
    err.print(f"logged in to {server} (key stored in {path})", highlight=False)


def logout() -> None:
    """Remove the server and key that ``fitq login`` stored."""
    path = config.config_path()
    if config.remove():
        err.print(f"logged out (removed {path})", highlight=False)
    else:
        err.print("not logged in", highlight=False)


def _read_key() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("API key", hide_input=True))
    return sys.stdin.readline()


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
