"""``fitq db upgrade`` and ``fitq keys create|list|revoke``: the commands that talk to
the database directly, and the key registration ``fitq up``/``fitq api`` do at
start. The database modules are imported inside each command, so the client
commands run on an install without the server's extras."""

from __future__ import annotations

import typer
from rich.table import Table

from fitq.service.cli.common import JsonOption, err, fail, out, print_json
from fitq.service.settings import Settings, get_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys (admin; talks to the database directly).", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from fitq.service.db import migrate

    migrate.upgrade(get_settings().resolved_database_url)
    out.print(f"database at {migrate.head_revision()}")


@keys_app.command("create")
def keys_create(name: str) -> None:
    """Create a key; print it alone on stdout (it is shown only once)."""
    from fitq.service import auth
    from fitq.service.db.engine import transaction
    from fitq.service.errors import FitqError

    try:
        with transaction(get_settings().resolved_database_url) as session:
            key = auth.create_key(session, name)
    except FitqError as exc:
        fail(exc.message)
    print(key)


@keys_app.command("list")
def keys_list(as_json: bool = JsonOption) -> None:
    """Every key: its name, when it was created and revoked (never the key nor its hash)."""
    from sqlalchemy import select

    from fitq.service.db.engine import transaction
    from fitq.service.db.models import ApiKey

    with transaction(get_settings().resolved_database_url) as session:
        rows = session.execute(
            select(ApiKey.name, ApiKey.created_at, ApiKey.revoked_at).order_by(ApiKey.created_at)
        ).all()
    if as_json:
        print_json([{"name": n, "created_at": c, "revoked_at": r} for n, c, r in rows])
        return
    table = Table("name", "created", "revoked", box=None)
    for name, created, revoked in rows:
        table.add_row(
            name, f"{created:%Y-%m-%d %H:%M}", f"{revoked:%Y-%m-%d %H:%M}" if revoked else ""
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke the key named NAME."""
    from fitq.service import auth
    from fitq.service.db.engine import transaction
    from fitq.service.errors import FitqError

    try:
        with transaction(get_settings().resolved_database_url) as session:
            auth.revoke_key(session, name)
    except FitqError as exc:
        fail(exc.message)
    err.print(f"revoked {name}")


def register_env_key(settings: Settings) -> None:
    """Register ``FITQ_API_KEY`` (when set) in the database, once."""
    if not settings.api_key:
        return
    from fitq.service import auth
    from fitq.service.db.engine import transaction

    with transaction(settings.resolved_database_url) as session:
        auth.ensure_key(session, "env", settings.api_key)


def ensure_local_key(settings: Settings) -> str:
    """`fitq up`'s key: FITQ_API_KEY when set, else one created on first start
    and left in the home folder for the CLI. Returns where it came from."""
    from fitq.service import auth
    from fitq.service.db.engine import transaction

    if settings.api_key:
        register_env_key(settings)
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
