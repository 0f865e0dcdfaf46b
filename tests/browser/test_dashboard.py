"""The dashboard and the API docs in real headless Chromium (Debian's, driven by Playwright)
against a live ``fitq up``: enter the key, open a job from the list, watch
its loss chart grow while it trains, save a screenshot of the job page
(``test-artifacts/``), and cancel the job from the page; a sweep's page (every
trial's curve, the ranking, a scatter per parameter); a job's pack; jobs
ticked in the list compared (their curves on one chart, their spec's
differences); /docs and
/redoc from the bundled files. Each page's Content-Security-Policy is in force
(so the predicates given to ``wait_for_function`` are functions: a string would
need ``eval``, which the policy refuses)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fitq.service.client import Client
from tests.support.specs import DIGITS_SPEC, digits_spec
from tests.support.stack import Stack, fitq_up

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000

SLOW_SPEC: dict[str, Any] = {
    **DIGITS_SPEC,
    "name": "digits-live",
    "model": {
        "input_dim": 64,
        "layers": [
            {"type": "dense", "units": 256, "activation": "relu"},
            {"type": "dense", "units": 256, "activation": "relu"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    },
    "fit": {**DIGITS_SPEC["fit"], "epochs": 400, "batch_size": 4},
}
"""Long enough to still be training while the test watches (it is cancelled)."""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with fitq_up(tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1366, "height": 900},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def points(page: Any) -> int:
    return int(page.get_attribute("#loss-chart", "data-points") or 0)


def test_watch_a_job_train_live_then_cancel_it_from_the_page(live: Stack, page: Any) -> None:
    with Client(live.url, live.key) as client:
        job = client.submit(SLOW_SPEC)

    page.goto(live.url + "/")
    page.fill("#key-input", live.key)
    page.click("#key-save")
    row = page.locator(f'tr.job-row[data-job="{job.id}"]')
    row.wait_for(timeout=WAIT_MS)
    page.reload()  # the key was kept in localStorage
    row.click(timeout=WAIT_MS)

    page.wait_for_function(
        "() => Number(document.querySelector('#loss-chart')?.dataset.points) >= 2",
        timeout=WAIT_MS,
    )
    first = points(page)
    page.wait_for_function(
        f"() => Number(document.querySelector('#loss-chart').dataset.points) > {first}",
        timeout=WAIT_MS,
    )
    assert page.get_attribute("#status .badge", "data-status") == "running"
    assert "digits-live" in page.inner_text("h1")
    assert '"input_dim": 64' in page.inner_text("#spec")
    assert page.locator("#history li").count() >= 2  # queued, running
    time.sleep(1)  # a few more points for the picture
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-job.png"), full_page=True)

    page.click("#cancel")
    page.wait_for_selector('#status .badge[data-status="cancelled"]', timeout=WAIT_MS)
    assert page.is_disabled("#cancel") and page.is_disabled("#download")
    with Client(live.url, live.key) as client:
        assert client.job(job.id)["status"] == "cancelled"

    page.goto(live.url + "/#/")
    page.locator(f'tr.job-row[data-job="{job.id}"] .badge[data-status="cancelled"]').wait_for(
        timeout=WAIT_MS
    )


def open_with_key(page: Any, live: Stack, path: str) -> None:
    page.goto(live.url + "/")
    page.fill("#key-input", live.key)
    page.click("#key-save")
    page.goto(live.url + "/" + path)


def test_a_sweep_page_draws_every_trial_the_ranking_and_each_parameter(
    live: Stack, page: Any
) -> None:
    parameters = {
        "compile.optimizer.learning_rate": {"values": [0.003, 0.0001]},
        "model.layers.0.units": {"values": [8, 32]},
    }
    spec = {**DIGITS_SPEC, "fit": {**DIGITS_SPEC["fit"], "epochs": 4}}
    asha = {"type": "asha", "min_epochs": 1, "reduction_factor": 2}
    with Client(live.url, live.key) as client:
        sweep = client.sweep(
            spec, parameters, metric="val_loss", early_terminate=asha, name="digits-grid"
        )
        sweep.wait(timeout=300)
        trials = sweep.trials()

    open_with_key(page, live, "#/")
    page.locator(f'tr.sweep-row[data-sweep="{sweep.id}"]').click(timeout=WAIT_MS)
    page.wait_for_selector('#status .badge[data-status="succeeded"]', timeout=WAIT_MS)
    page.wait_for_function(
        f"() => Number(document.querySelector('#curves-chart').dataset.lines) === {len(trials)}",
        timeout=WAIT_MS,
    )
    assert "digits-grid" in page.inner_text("h1")
    assert page.locator("#ranking tr.trial-row").count() == len(trials)
    ranked = [row.get_attribute("data-job") for row in page.locator("#ranking tr.trial-row").all()]
    assert ranked == [t["job_id"] for t in trials]
    pruned = sum(t["pruned"] for t in trials)
    assert page.locator('#ranking [data-pruned="true"]').count() == pruned
    for i, name in enumerate(parameters):
        scatter = page.locator(f"#scatter-{i}")
        assert scatter.get_attribute("data-param") == name
        assert scatter.get_attribute("data-points") == str(len(trials))
    assert page.inner_text("#f-trials").startswith(f"{len(trials)}/{len(trials)} ended")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-sweep.png"), full_page=True)

    page.locator(f'#ranking tr.trial-row[data-job="{trials[0]["job_id"]}"] a').click()
    page.wait_for_selector("#f-sweep", timeout=WAIT_MS)
    assert page.get_attribute("#f-sweep", "href") == f"#/sweeps/{sweep.id}"


def test_the_job_page_says_its_pack(live: Stack, page: Any) -> None:
    """The pack columns are the worker's to write; here they are set on an
    ended job's row to see the page read them."""
    from sqlalchemy import update

    from fitq.service.db.engine import engine_for, transaction
    from fitq.service.db.models import Job

    with Client(live.url, live.key) as client:
        job = client.submit({**DIGITS_SPEC, "fit": {**DIGITS_SPEC["fit"], "epochs": 1}})
        job.wait()
    with transaction(live.database_url) as session:
        session.execute(update(Job).where(Job.id == job.id).values(pack_id="p" * 32, pack_size=5))
    engine_for(live.database_url).dispose()
    open_with_key(page, live, f"#/jobs/{job.id}")
    page.wait_for_function(
        "() => document.querySelector('#f-pack')?.textContent === 'trained in a pack of 5'",
        timeout=WAIT_MS,
    )


def test_jobs_ticked_in_the_list_are_compared_on_one_chart(live: Stack, page: Any) -> None:
    with Client(live.url, live.key) as client:
        jobs = [
            client.submit(
                digits_spec(name=f"cmp-{size}", tags=["cmp"], fit={"epochs": 2, "batch_size": size})
            )
            for size in (32, 64)
        ]
        for job in jobs:
            job.wait(timeout=300)

    open_with_key(page, live, "#/")
    for job in jobs:
        page.locator(f'tr.job-row[data-job="{job.id}"] input.pick').check(timeout=WAIT_MS)
    page.click("#compare")
    for chart in ("#compare-loss", "#compare-accuracy"):  # train and validation per job
        page.wait_for_function(
            f"() => Number(document.querySelector('{chart}')?.dataset.lines) === 4",
            timeout=WAIT_MS,
        )
    shown = [row.get_attribute("data-job") for row in page.locator("tr.compare-row").all()]
    assert shown == [job.id for job in jobs]
    differences = [
        tr.get_attribute("data-path") for tr in page.locator("#spec-diff tr[data-path]").all()
    ]
    assert set(differences) == {"name", "fit.batch_size"}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"), full_page=True)


def csp_violations(page: Any) -> list[str]:
    """What the page's Content-Security-Policy blocks, as it happens (the console's
    report and the document's ``securitypolicyviolation`` events)."""
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.expose_function("reportViolation", lambda text: seen.append(str(text)))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " window.reportViolation(`${e.violatedDirective} ${e.blockedURI}`))"
    )
    return seen


def test_the_docs_render_from_bundled_files_with_no_policy_violation(
    live: Stack, page: Any
) -> None:
    violations = csp_violations(page)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(live.url + "/docs")
    page.locator(".opblock-summary-path", has_text="/v1/jobs").first.wait_for(timeout=WAIT_MS)
    page.goto(live.url + "/")
    page.fill("#key-input", live.key)
    page.click("#key-save")
    page.locator("#jobs").wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(500)  # let late violations (a style, an image) be reported
    assert violations == []
    assert all(url.startswith((live.url, "data:", "blob:")) for url in requested), requested


def test_redoc_renders_and_its_one_third_party_image_is_kept_out(live: Stack, page: Any) -> None:
    """ReDoc's sidebar links Redocly's logo from cdn.redoc.ly; the policy blocks it
    (the logo hides itself when it fails to load) and nothing else."""
    violations = csp_violations(page)
    page.goto(live.url + "/redoc")
    page.get_by_text("/v1/jobs").first.wait_for(state="attached", timeout=WAIT_MS)
    page.wait_for_timeout(500)
    assert violations, "the logo request should be refused"
    for violation in violations:
        assert "https://cdn.redoc.ly/redoc/logo-mini.svg" in violation, violation
    assert page.locator("img[alt='redocly logo']").count() == 0
