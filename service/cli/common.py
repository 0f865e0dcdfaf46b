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

from fitq.service.client import ApiError, Client
from fitq.service.settings import get_settings

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


def client() -> Client:
    """A client for ``FITQ_API_URL`` with ``FITQ_API_KEY``, or the key `fitq up` left."""
    settings = get_settings()
    key = settings.api_key
    if not key and settings.local_key_file.exists():
        key = settings.local_key_file.read_text().strip()
    return Client(settings.api_url, key)


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, with the API's refusals and an unreachable API as one line."""
    import httpx

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        fail(str(exc), EXIT_API_ERROR)
    except httpx.TransportError as exc:
        fail(f"cannot reach fitq at {get_settings().api_url}: {exc}", EXIT_UNREACHABLE)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else ""
