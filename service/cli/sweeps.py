"""``fitq sweep|sweeps|sweep-show|sweep-cancel``: run a sweep (with ``--follow``,
a live ranked table until it ends), list sweeps, show one with its ranking."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Column, Table
from rich.text import Text

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
from fitq.service.cli.jobs import dataset_ref, load_spec
from fitq.service.client import Client
from fitq.service.client.sweep import TERMINAL, summary_line

FOLLOW_POLL_SECONDS = 1.0
"""How often ``--follow`` reads the sweep and its ranking again."""


def register(app: typer.Typer) -> None:
    app.command()(sweep)
    app.command()(sweeps)
    app.command("sweep-show")(sweep_show)
    app.command("sweep-cancel")(sweep_cancel)


def sweep(
    sweep_file: Annotated[
        Path, typer.Argument(help="The sweep, JSON or YAML: the body of POST /v1/sweeps.")
    ],
    data: str | None = typer.Option(
        None, help="Training data of every trial: a file to upload, or a dataset id."
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Show the live ranking until it ends."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run a sweep; print its id (with --follow, a live ranked table; the exit
    code tells how it ended: 0 succeeded, 4 failed, 5 cancelled)."""
    body = load_spec(sweep_file, what="the sweep")
    spec = body.get("spec")
    if not isinstance(spec, dict):
        fail(f"{sweep_file} must hold a 'spec' object (the job spec of every trial)", EXIT_USAGE)
    with client() as c:
        if data:
            body["spec"] = {**spec, "dataset_id": dataset_ref(c, data)}
        created = call(c.create_sweep, body)
        if not follow:
            if as_json:
                print_json(dict(created))
            else:
                print(created.id)
            return
        err.print(
            f"sweep {created.id}: {created['trials']['total']} trials queued", highlight=False
        )
        final = call(_follow, c, created.id)
    if as_json:
        print_json(final)
    if final["status"] != "succeeded":
        err.print(f"sweep {final['id']} {final['status']}", highlight=False)
    raise typer.Exit(EXIT_FOR_STATUS.get(final["status"], 1))


def _follow(c: Client, sweep_id: str) -> dict[str, Any]:
    """The ranking, redrawn until every trial ended; the sweep at its end."""
    with Live(console=out, auto_refresh=False) as live:
        while True:
            data = c.read_sweep(sweep_id)
            trials = c.sweep_trials(sweep_id)
            live.update(Group(Text(summary_line(data)), ranking(data, trials)), refresh=True)
            if data["status"] in TERMINAL:
                return data
            time.sleep(FOLLOW_POLL_SECONDS)


def ranking(data: dict[str, Any], trials: list[dict[str, Any]]) -> Table:
    """The trials best first: rank, each parameter (by the shortest end of its
    path that tells it apart), the metric (↓ minimized, ↑ maximized), status
    (``pruned`` for a trial that ASHA stopped), epochs, job id."""
    metric = data["metric"]
    paths = list(data.get("parameters") or {})
    arrow = "↓" if metric["goal"] == "minimize" else "↑"
    table = Table(
        "#",
        *short_names(paths),
        f"{metric['name']} {arrow}",
        "status",
        "epochs",
        Column("job", no_wrap=True, min_width=32),
        title=f"sweep {data.get('name') or data['id']}",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    for rank, trial in enumerate(trials, start=1):
        table.add_row(
            str(rank) if trial["value"] is not None else "–",
            *(_value(trial["params"].get(path)) for path in paths),
            fmt(trial["value"]),
            "pruned" if trial["pruned"] else trial["status"],
            str(trial["epochs"]),
            trial["job_id"],
        )
    return table


def short_names(paths: list[str]) -> list[str]:
    """``compile.optimizer.learning_rate`` → ``learning_rate``, longer where two
    paths end alike (``layers.0.units``, ``layers.1.units``)."""
    names = []
    for path in paths:
        parts = path.split(".")
        for take in range(1, len(parts) + 1):
            name = ".".join(parts[-take:])
            if parts[-take].isdigit():  # a bare index says little: take its list's name too
                continue
            if sum(other == name or other.endswith("." + name) for other in paths) == 1:
                break
        names.append(name)
    return names


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sweeps(
    limit: int = typer.Option(20, help="At most this many, newest first."),
    as_json: bool = JsonOption,
) -> None:
    """Your sweeps, newest first."""
    with client() as c:
        items = call(c.sweeps, limit)
    if as_json:
        print_json(items)
        return
    table = Table(
        Column("id", no_wrap=True, min_width=32),
        "name",
        "status",
        "trials",
        "best",
        "metric",
        "created",
    )
    for item in items:
        counts = item["trials"]
        ended = counts["succeeded"] + counts["failed"] + counts["cancelled"]
        best = item.get("best")
        table.add_row(
            item["id"],
            item.get("name") or "",
            item["status"],
            f"{ended}/{counts['total']}",
            fmt(best["value"]) if best else "",
            f"{item['metric']['name']} ({item['metric']['goal'][:3]})",
            str(item["created_at"])[:19],
        )
    out.print(table)


def sweep_show(sweep_id: str, as_json: bool = JsonOption) -> None:
    """One sweep: its status, counts, best trial and the ranking of its trials."""
    with client() as c:
        data = call(c.read_sweep, sweep_id)
        trials = call(c.sweep_trials, sweep_id)
    if as_json:
        print_json({**data, "ranking": trials})
        return
    out.print(summary_line(data), highlight=False)
    out.print(ranking(data, trials))


def sweep_cancel(sweep_id: str, as_json: bool = JsonOption) -> None:
    """Cancel every trial of a sweep not yet ended."""
    with client() as c:
        data = call(c.cancel_sweep, sweep_id)
    if as_json:
        print_json(data)
    else:
        out.print(summary_line(data), highlight=False)
