"""``fitq datasets upload|list|show|delete``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Column, Table

from fitq.service.cli.common import JsonOption, call, client, fail, out, print_json

datasets_app = typer.Typer(help="Upload, list, show and delete datasets.", no_args_is_help=True)


@datasets_app.command("upload")
def upload(
    path: Path,
    name: str | None = typer.Option(None, help="Default: the file's name."),
    label: str | None = typer.Option(None, help="Target column (default: the last)."),
    as_json: bool = JsonOption,
) -> None:
    """Upload a CSV/TSV, Parquet or NPZ file; print its id."""
    if not path.is_file():
        fail(f"no such file: {path}", 2)
    with client() as c:
        ds = call(c.upload_dataset, path, name=name, label=label)
    if as_json:
        print_json(ds)
    else:
        out.print(f"{ds['id']}  {ds['name']}  {ds['n_rows']} rows × {ds['n_features']} features")


@datasets_app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """Your datasets and the built-in ones."""
    with client() as c:
        items = call(c.datasets)
    if as_json:
        print_json(items)
        return
    table = Table(
        Column("id", no_wrap=True, min_width=32), "name", "format", "rows", "features", "task"
    )
    for ds in items:
        table.add_row(
            ds["id"],
            ds["name"],
            ds["format"],
            str(ds["n_rows"]),
            str(ds["n_features"]),
            _task(ds),
        )
    out.print(table)


@datasets_app.command("show")
def show(dataset_id: str, as_json: bool = JsonOption) -> None:
    """One dataset: size, shape, label, task."""
    with client() as c:
        ds = call(c.dataset, dataset_id)
    if as_json:
        print_json(ds)
        return
    table = Table(show_header=False)
    for key in ("id", "name", "format", "filename", "sha256", "size_bytes", "n_rows", "n_features"):
        table.add_row(key, str(ds.get(key) if ds.get(key) is not None else ""))
    table.add_row("label", str(ds.get("label") or ""))
    table.add_row("task", _task(ds))
    table.add_row("created", str(ds.get("created_at") or "")[:19])
    out.print(table)


@datasets_app.command("delete")
def delete(dataset_id: str) -> None:
    """Delete an upload (refused while a job that has not ended uses it)."""
    with client() as c:
        call(c.delete_dataset, dataset_id)
    out.print(f"deleted {dataset_id}")


def _task(ds: dict[str, object]) -> str:
    task = ds.get("task") or {}
    assert isinstance(task, dict)
    if task.get("kind") == "classification":
        return f"classification ({len(task.get('classes') or [])} classes)"
    return str(task.get("kind", ""))
