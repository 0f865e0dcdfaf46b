"""The real ``fitq`` command (a subprocess) against a live ``fitq up``:
datasets, submit --follow to the end, the job commands, and the error paths
(one line on stderr, no traceback, the documented exit codes)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from tests.support.processes import FITQ, fitq_env, free_port
from tests.support.specs import DIGITS_SPEC
from tests.support.stack import Stack, fitq_up

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fitq_up(tmp_path_factory.mktemp("cli")) as running:
        yield running


def fitq(
    live: Stack, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FITQ, *args], env=env or live.env, capture_output=True, text=True, timeout=180
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_datasets_upload_list_show_delete(live: Stack, tmp_path: Path) -> None:
    up = fitq(
        live, "datasets", "upload", str(EXAMPLES / "digits.csv"), "--label", "digit", "--json"
    )
    assert up.returncode == 0, up.stderr
    ds = json.loads(up.stdout)
    assert (ds["n_rows"], ds["n_features"], ds["label"]) == (1797, 64, "digit")
    listed = json.loads(fitq(live, "datasets", "list", "--json").stdout)
    assert {ds["id"], "digits", "iris"} <= {d["id"] for d in listed}
    shown = fitq(live, "datasets", "show", ds["id"])
    assert shown.returncode == 0 and "1797" in shown.stdout
    assert fitq(live, "datasets", "delete", ds["id"]).returncode == 0
    gone = fitq(live, "datasets", "show", ds["id"])
    assert gone.returncode == 1 and "404" in one_line_error(gone)


def test_submit_follow_to_the_end_then_show_download_predict(live: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({k: v for k, v in DIGITS_SPEC.items() if k != "dataset_id"}))
    run = fitq(live, "submit", str(spec), "--data", str(EXAMPLES / "digits.csv"), "--follow")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    job_id = run.stderr.split("submitted ", 1)[1].split()[0]
    assert "val_accuracy" in run.stdout and "succeeded" in run.stdout  # the summary table

    listed = json.loads(fitq(live, "jobs", "--json").stdout)
    assert job_id in [j["id"] for j in listed]
    table = fitq(live, "jobs")
    assert table.returncode == 0 and job_id in table.stdout
    shown = json.loads(fitq(live, "show", job_id, "--json").stdout)
    assert shown["status"] == "succeeded" and len(shown["history"]) == DIGITS_SPEC["fit"]["epochs"]
    assert [h["status"] for h in shown["status_history"]] == ["queued", "running", "succeeded"]

    model = tmp_path / "model.safetensors"
    assert fitq(live, "download", job_id, "-o", str(model)).returncode == 0
    assert "layers.0.kernel" in load_file(model)

    predicted = fitq(live, "predict", job_id, str(EXAMPLES / "digits.csv"))
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.split()
    truth = [line.rsplit(",", 1)[1] for line in (EXAMPLES / "digits.csv").read_text().split()[1:]]
    assert len(lines) == len(truth) == 1797
    assert sum(a == b for a, b in zip(lines, truth, strict=True)) / len(truth) > 0.9

    events = fitq(live, "watch", job_id, "--json")
    assert events.returncode == 0
    kinds = [json.loads(line)["event"] for line in events.stdout.splitlines()]
    assert kinds.count("epoch") == DIGITS_SPEC["fit"]["epochs"] and kinds[-1] == "status"


def test_a_bad_spec_is_one_line_and_exit_1(live: Stack, tmp_path: Path) -> None:
    bad = json.loads(json.dumps(DIGITS_SPEC))
    bad["model"]["layers"][0]["activation"] = "relux"
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(bad))
    result = fitq(live, "submit", str(spec), "--follow")
    assert result.returncode == 1
    line = one_line_error(result)
    assert "422" in line and "relux" in line


def test_usage_errors_exit_2_and_an_unreachable_api_exits_3(live: Stack, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = fitq(live, "submit", str(broken))
    assert result.returncode == 2 and "not valid JSON" in one_line_error(result)
    missing = fitq(live, "submit", str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "no such file" in one_line_error(missing)

    away = fitq_env(live.home, FITQ_API_URL=f"http://127.0.0.1:{free_port()}")
    away["FITQ_API_KEY"] = live.key
    result = fitq(live, "jobs", env=away)
    assert result.returncode == 3 and "cannot reach fitq" in one_line_error(result)


def test_cancel_then_watch_exits_5(live: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "long.json"
    spec.write_text(json.dumps({**DIGITS_SPEC, "fit": {**DIGITS_SPEC["fit"], "epochs": 2000}}))
    submitted = fitq(live, "submit", str(spec))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    cancelled = fitq(live, "cancel", job_id)
    assert cancelled.returncode == 0 and job_id in cancelled.stdout
    watched = fitq(live, "watch", job_id)
    assert watched.returncode == 5, watched.stderr
    assert "cancelled" in watched.stderr
    unknown = fitq(live, "cancel", "no-such-job")
    assert unknown.returncode == 1 and "404" in one_line_error(unknown)


def test_sweep_follow_shows_the_ranking_until_it_ends(live: Stack, tmp_path: Path) -> None:
    import yaml

    spec = {k: v for k, v in DIGITS_SPEC.items() if k not in ("dataset_id", "name")}
    body = {
        "name": "cli-sweep",
        "spec": {**spec, "fit": {**DIGITS_SPEC["fit"], "epochs": 3}},
        "parameters": {"compile.optimizer.learning_rate": {"values": [0.003, 0.0003]}},
        "metric": {"name": "val_loss"},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(body))
    wide = {**live.env, "COLUMNS": "120"}  # a terminal's width, not a pipe's 80
    data = str(EXAMPLES / "digits.csv")
    run = fitq(live, "sweep", str(path), "--data", data, "--follow", env=wide)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    sweep_id = run.stderr.split("sweep ", 1)[1].split(":")[0]
    assert "2 trials queued" in run.stderr
    assert f"sweep {sweep_id} succeeded: 2/2 ended" in run.stdout
    assert "val_loss ↓" in run.stdout and "learning_rate" in run.stdout
    trials = json.loads(fitq(live, "sweep-show", sweep_id, "--json").stdout)["ranking"]
    assert all(t["job_id"] in run.stdout for t in trials)  # the final ranking, every row

    listed = json.loads(fitq(live, "sweeps", "--json").stdout)
    assert sweep_id in [s["id"] for s in listed]
    assert sweep_id in fitq(live, "sweeps").stdout
    shown = json.loads(fitq(live, "sweep-show", sweep_id, "--json").stdout)
    assert shown["status"] == "succeeded" and len(shown["ranking"]) == 2
    assert shown["best"]["job_id"] == shown["ranking"][0]["job_id"]
    best = fitq(live, "show", shown["best"]["job_id"])
    assert best.returncode == 0 and f"a trial of sweep {sweep_id}" in best.stdout

    cancelled = fitq(live, "sweep-cancel", sweep_id)
    assert cancelled.returncode == 0 and "succeeded" in cancelled.stdout  # nothing left to cancel
    missing = fitq(live, "sweep-show", "no-such-sweep")
    assert missing.returncode == 1 and "404" in one_line_error(missing)


def test_sweep_of_a_bad_combination_is_one_line(live: Stack, tmp_path: Path) -> None:
    body = {
        "spec": DIGITS_SPEC,
        "parameters": {"fit.epochs": {"values": [2, 0]}},
        "metric": {"name": "val_loss"},
    }
    path = tmp_path / "bad-sweep.json"
    path.write_text(json.dumps(body))
    result = fitq(live, "sweep", str(path))
    assert result.returncode == 1
    line = one_line_error(result)
    assert "422" in line and "fit.epochs=0" in line
    no_spec = tmp_path / "no-spec.json"
    no_spec.write_text(json.dumps({"parameters": {}}))
    assert fitq(live, "sweep", str(no_spec)).returncode == 2


def test_show_says_a_job_trained_in_a_pack(live: Stack, tmp_path: Path) -> None:
    """The pack columns are the worker's to write; here they are set on a
    finished job's row to see ``show`` read them."""
    from sqlalchemy import update

    from fitq.service.db.engine import engine_for, transaction
    from fitq.service.db.models import Job

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**DIGITS_SPEC, "fit": {**DIGITS_SPEC["fit"], "epochs": 1}}))
    job_id = fitq(live, "submit", str(spec)).stdout.strip()
    assert fitq(live, "watch", job_id).returncode == 0  # ended: no worker writes its row again
    with transaction(live.database_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(pack_id="p" * 32, pack_size=4))
    engine_for(live.database_url).dispose()
    shown = fitq(live, "show", job_id)
    assert shown.returncode == 0 and "trained in a pack of 4" in shown.stdout
    assert json.loads(fitq(live, "show", job_id, "--json").stdout)["pack"] == {
        "id": "p" * 32,
        "size": 4,
    }
