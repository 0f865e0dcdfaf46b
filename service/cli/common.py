"""What the user commands of ``fitq`` share: the client from the settings,
one-line errors, exit codes, JSON output.

Exit codes (scripts can rely on them):

    0  done (for ``--follow``/``watch``: the job succeeded)
    1  the API refused the request (a 4xx, printed as one line) or failed (5xx)
    2  usage: a bad argument, a missing or unreadable file, a spec that is not JSON/YAML
    3  the API cannot be reached
    4  the job ended ``failed``
    5  the job ended ``cancelled``
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from rich.console import Console

from fitq.service.client import ApiError, Client, config

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_FAILED = 4
EXIT_CANCELLED = 5
EXIT_FOR_STATUS = {"succeeded": 0, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}

out = Console()
err = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def fail(message: str, code: int = EXIT_API_ERROR) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


chosen: dict[str, str | None] = {"url": None, "api_key": None}
"""``fitq --url … --api-key …``, set by the command's callback (``app.py``)."""


def resolved() -> config.Resolved:
    """The server and key: ``--url``/``--api-key``, then the environment, then the
    file ``fitq login`` wrote, then ``fitq up``'s key (``client/config.py``)."""
    try:
        return config.resolve(chosen["url"], chosen["api_key"])
    except ValueError as exc:  # an unreadable config file
        fail(str(exc), EXIT_USAGE)


def client() -> Client:
    """A client for the server and key :func:`resolved` finds."""
    found = resolved()
    return Client(found.url, found.api_key)


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, with the API's refusals and an unreachable API as one line."""
    import httpx

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        fail(str(exc), EXIT_API_ERROR)
    except httpx.TransportError as exc:
        fail(f"cannot reach fitq at {resolved().url}: {exc}", EXIT_UNREACHABLE)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else ""
