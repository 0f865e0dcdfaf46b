"""``fitq store gc``: reclaim the artifact store's space (admin).

Like ``fitq db`` and ``fitq keys`` it talks to the database and the store
directly (``FITQ_DATABASE_URL``, ``FITQ_STORAGE_URL``), so it runs where the
API runs; the server's modules are imported inside the command, so a
client-only install keeps its ``fitq``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from fitq.service.cli.common import JsonOption, err, out, print_json
from fitq.service.settings import get_settings

if TYPE_CHECKING:
    from fitq.service.store.gc import Report

store_app = typer.Typer(
    help="The artifact store (admin; talks to the database and the store directly).",
    no_args_is_help=True,
)


@store_app.command("gc")
def store_gc(
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; delete nothing."),
    grace: float | None = typer.Option(
        None,
        "--grace",
        min=0,
        help="Leave objects younger than this many seconds (default FITQ_GC_GRACE_SECONDS, 3600).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Delete what no row needs: orphan dataset files, ended jobs' checkpoints,
    superseded models, deleted jobs' files, interrupted writes' leftovers."""
    from fitq.service.store import ArtifactStore, gc

    settings = get_settings()
    report = gc.collect(
        settings.resolved_database_url,
        ArtifactStore.from_settings(settings),
        grace_seconds=settings.gc_grace_seconds if grace is None else grace,
        dry_run=dry_run,
    )
    if as_json:
        print_json(_as_json(report))
    else:
        print_report(report)
    if report.failed:
        raise typer.Exit(1)


def _as_json(report: Report) -> dict[str, object]:
    return {
        "dry_run": report.dry_run,
        "grace_seconds": report.grace_seconds,
        "objects": report.objects,
        "bytes": report.bytes,
        "young": report.young,
        "failed": report.failed,
        "items": [
            {"key": g.key, "objects": g.objects, "bytes": g.bytes, "reason": g.reason}
            for g in report.items
        ],
    }


def print_report(report: Report) -> None:
    table = Table("key", "why", "objects", "bytes", box=None)
    for g in report.items:
        table.add_row(g.key, g.reason, str(g.objects), f"{g.bytes:,}")
    if report.items:
        out.print(table)
    verb = "would delete" if report.dry_run else "deleted"
    out.print(
        f"{verb} {report.objects} objects, {human_bytes(report.bytes)} "
        f"({report.bytes:,} bytes); left {report.young} younger than "
        f"{report.grace_seconds:g} s",
        highlight=False,
    )
    for key in report.failed:
        err.print(f"[red]not deleted:[/red] {key} (see the log)", highlight=False)


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units (``1.5 MiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
