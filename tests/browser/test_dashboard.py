"""The dashboard in real headless Chromium (Debian's, driven by Playwright)
against a live ``fitq up``: enter the key, open a job from the list, watch
its loss chart grow while it trains, save a screenshot of the job page
(``test-artifacts/``), and cancel the job from the page."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fitq.service.client import Client
from tests.support.specs import DIGITS_SPEC
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
        "Number(document.querySelector('#loss-chart')?.dataset.points) >= 2", timeout=WAIT_MS
    )
    first = points(page)
    page.wait_for_function(
        f"Number(document.querySelector('#loss-chart').dataset.points) > {first}", timeout=WAIT_MS
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
