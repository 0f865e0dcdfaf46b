"""``fitq jobs`` with its filters and sorts, and ``fitq compare``, run in
process (typer's runner) against the API served on a thread."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from fitq.service.cli.app import app as cli
from fitq.service.db.models import SUCCEEDED, Job
from tests.client.in_process import serving
from tests.conftest import SPEC, Owner


@pytest.fixture
def fitq(app: FastAPI, owner: Owner) -> Iterator[Callable[..., Result]]:
    """``fitq(*args)``: the command's result (exit code, stdout, stderr)."""
    runner = CliRunner()
    with serving(app) as url:
        yield lambda *args: runner.invoke(
            cli, ["--url", url, "--api-key", owner.key, *args], env={"COLUMNS": "200"}
        )


def test_jobs_by_tag_status_and_metric(
    fitq: Callable[..., Result], job_factory: Callable[..., Job]
) -> None:
    worse = job_factory(status=SUCCEEDED, tags=["cnn"], metrics={"val_loss": 0.9}).id
    best = job_factory(status=SUCCEEDED, tags=["cnn"], metrics={"val_loss": 0.1}).id
    job_factory(tags=["cnn"])  # queued
    result = fitq("jobs", "--tag", "cnn", "--status", "succeeded", "--sort", "val_loss", "--json")
    assert result.exit_code == 0, result.output
    assert [j["id"] for j in json.loads(result.stdout)] == [best, worse]
    table = fitq("jobs", "--tag", "cnn", "--sort", "-val_loss", "--since", "2026-01-01T00:00Z")
    assert table.exit_code == 0 and "val_loss" in table.stdout and "0.9000" in table.stdout
    naive = fitq("jobs", "--sort", "-val_loss", "--since", "2026-12-06")
    assert naive.exit_code == 1 and "created_after" in naive.stderr


def test_submit_adds_tags_to_the_specs_own(fitq: Callable[..., Result], tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "tags": ["iris"]}))
    submitted = fitq("submit", str(spec), "--tag", "baseline", "--json")
    assert submitted.exit_code == 0, submitted.output
    assert json.loads(submitted.stdout)["tags"] == ["iris", "baseline"]
    found = json.loads(fitq("jobs", "--tag", "baseline", "--tag", "iris", "--json").stdout)
    assert [j["id"] for j in found] == [json.loads(submitted.stdout)["id"]]


def test_compare_shows_the_differences_and_the_metrics(
    fitq: Callable[..., Result], job_factory: Callable[..., Job]
) -> None:
    wide = {**SPEC, "fit": {**SPEC["fit"], "batch_size": 64}}
    a = job_factory(name="narrow", metrics={"loss": 0.25}, test_metrics={"loss": 0.3}).id
    b = job_factory(name="wide", spec=wide, metrics={"loss": 0.5}).id
    as_json = fitq("compare", a, b, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {
        "jobs": [a, b],
        "spec": {"fit.batch_size": [16, 64]},
        "metrics": {"loss": [0.25, 0.5], "test loss": [0.3, None]},
    }
    shown = fitq("compare", a, b)
    assert shown.exit_code == 0, (shown.output, shown.exception)
    table = shown.stdout
    assert "fit.batch_size" in table and "narrow" in table and "0.2500" in table
    assert "model.layers" not in table  # equal paths are hidden
    alone = fitq("compare", a)
    assert alone.exit_code == 2
