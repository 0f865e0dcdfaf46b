"""``fitq compare JOB JOB…``: jobs side by side, as a run comparison in MLflow or
W&B shows them: where their normalized specs differ (dotted paths; the paths
equal in all are left out) and how each ended (its latest metrics, its test
metrics). The diff is ``client/compare.py``'s."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Column, Table
from rich.text import Text

from fitq.service.cli.common import EXIT_USAGE, JsonOption, call, client, fail, fmt, out, print_json
from fitq.service.client.compare import ABSENT, final_metrics, spec_differences

MIN_JOBS = 2


def register(app: typer.Typer) -> None:
    app.command()(compare)


def compare(
    job_ids: Annotated[list[str], typer.Argument(help="Two jobs or more.", metavar="JOB JOB…")],
    as_json: bool = JsonOption,
) -> None:
    """Jobs side by side: their specs' differences and their final (and test) metrics."""
    if len(job_ids) < MIN_JOBS:
        fail(f"compare takes at least {MIN_JOBS} jobs (got {len(job_ids)})", EXIT_USAGE)
    with client() as c:
        jobs = [call(c.job, job_id) for job_id in job_ids]
    differences = spec_differences([job["spec"] for job in jobs])
    metrics = final_metrics(jobs)
    if as_json:
        print_json(
            {
                "jobs": [job["id"] for job in jobs],
                "spec": {
                    path: [None if v is ABSENT else v for v in values]
                    for path, values in differences.items()
                },
                "metrics": metrics,
            }
        )
        return
    facts = Table("", *_columns(jobs), title="jobs")
    facts.add_row("status", *(job["status"] for job in jobs))
    facts.add_row("tags", *(" ".join(job.get("tags") or []) for job in jobs))
    facts.add_row("epochs", *(str(job["progress"]["epoch"]) for job in jobs))
    for name, values in metrics.items():
        facts.add_row(name, *(fmt(v) for v in values))
    out.print(facts)
    if not differences:
        out.print("the specs are the same", highlight=False)
        return
    spec = Table("path", *_columns(jobs), title="spec differences")
    for path, values in differences.items():
        spec.add_row(path, *(_cell(v) for v in values))
    out.print(spec)


def _columns(jobs: list[dict[str, Any]]) -> list[Column]:
    """A column per job, headed by its name over the start of its id (text, not markup)."""
    return [Column(Text(f"{job.get('name') or ''}\n{job['id'][:12]}".strip())) for job in jobs]


def _cell(value: Any) -> Text:
    if value is ABSENT:
        return Text("—", style="dim")
    return Text(str(value) if not isinstance(value, str) else repr(value))
