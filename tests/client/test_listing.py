"""``Client.jobs``'s filters and sorts against the API in process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from fastapi import FastAPI

from fitq.service.client import ApiError, Client
from fitq.service.db.models import SUCCEEDED, Job, utcnow
from tests.client.in_process import serving
from tests.conftest import Owner
from tests.support.specs import spec_factory


def test_tags_status_name_sort_and_window(
    app: FastAPI, owner: Owner, job_factory: Callable[..., Job]
) -> None:
    now = utcnow()
    with serving(app) as url, Client(url, owner.key) as c:
        a = c.submit(spec_factory(name="lr-a", tags=["lr", "mnist"])).id
        b = c.submit(spec_factory(name="lr-b", tags=["lr"])).id
        done = job_factory(status=SUCCEEDED, metrics={"val_loss": 0.2}).id
        worse = job_factory(status=SUCCEEDED, metrics={"val_loss": 0.9}).id

        assert [j["id"] for j in c.jobs(tag="lr")] == [b, a]
        assert [j["id"] for j in c.jobs(tag=["lr", "mnist"])] == [a]
        assert [j["id"] for j in c.jobs(name="lr-*", limit=1)] == [b]
        assert [j["id"] for j in c.jobs(status=["succeeded"], sort="-val_loss")] == [worse, done]
        assert [j["id"] for j in c.jobs(sort="val_loss", limit=2)] == [done, worse]
        assert len(c.jobs(created_after=now - timedelta(minutes=1))) == 4
        assert c.jobs(created_before=now - timedelta(minutes=1)) == []
        assert c.jobs("succeeded", 1) and c.jobs(sweep="0" * 32) == []


def test_a_sweeps_tags_find_its_trials(app: FastAPI, owner: Owner) -> None:
    with serving(app) as url, Client(url, owner.key) as c:
        sweep = c.sweep(
            spec_factory(fit={"epochs": 1}),
            {"seed": {"values": [0, 1]}},
            metric="loss",
            tags=["grid"],
        )
        assert sweep["tags"] == ["grid"]
        trials = c.jobs(tag="grid")
        assert len(trials) == 2 and {t["sweep_id"] for t in trials} == {sweep.id}


def test_a_naive_time_is_refused_before_sending_and_by_the_server(
    app: FastAPI, owner: Owner
) -> None:
    with serving(app) as url, Client(url, owner.key) as c:
        with pytest.raises(ValueError, match="created_after needs a time zone"):
            c.jobs(created_after=datetime(2026, 12, 6))
        with pytest.raises(ApiError) as refused:
            c.jobs(created_before="2026-12-06")
        assert refused.value.status_code == 422
