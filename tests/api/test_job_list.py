"""Runs you can find again: tags at submit (jobs and sweeps), and ``GET /v1/jobs``
filtered by tag, name, status, sweep and creation time, sorted by a metric, with
the cursor correct under every sort."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from fitq.service import paging
from fitq.service.db.engine import session_factory
from fitq.service.db.models import FAILED, QUEUED, SUCCEEDED, Job, JobTag, utcnow
from tests.api.conftest import Api
from tests.support.specs import spec_factory

pytestmark = pytest.mark.anyio


async def ids(api: Api, **params: Any) -> list[str]:
    """Every job id the list gives for ``params``, page after page."""
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await api.get("/v1/jobs", params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ended")


def stored_tags(url: str, job_id: str) -> list[str]:
    with session_factory(url)() as session:
        return sorted(session.scalars(select(JobTag.tag).where(JobTag.job_id == job_id)))


class TestTagsAtSubmit:
    async def test_tags_are_kept_in_order_without_repeats(
        self, api: Api, database_url: str
    ) -> None:
        r = await api.post("/v1/jobs", json=spec_factory(tags=["mnist", "lr=0.01", "mnist"]))
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["tags"] == ["mnist", "lr=0.01"]
        assert "tags" not in job["spec"]  # the job's labels, not what it trains
        assert (await api.get(f"/v1/jobs/{job['id']}")).json()["tags"] == job["tags"]
        assert stored_tags(database_url, job["id"]) == ["lr=0.01", "mnist"]

    @pytest.mark.parametrize(
        ("tags", "loc"),
        [
            (["-x"], ["body", "tags", 0]),
            (["a" * 65], ["body", "tags", 0]),
            ("mnist", ["body", "tags"]),
            ([f"t{i}" for i in range(21)], ["body", "tags"]),
        ],
    )
    async def test_a_bad_tag_is_422_naming_it(self, api: Api, tags: Any, loc: list[Any]) -> None:
        r = await api.post("/v1/jobs", json=spec_factory(tags=tags))
        assert r.status_code == 422 and r.json()["loc"] == loc, r.text

    async def test_a_sweeps_tags_go_on_the_sweep_and_every_trial(
        self, api: Api, database_url: str
    ) -> None:
        body = {
            "spec": spec_factory(tags=["iris"], fit={"epochs": 1}),
            "parameters": {"seed": {"values": [0, 1]}},
            "metric": {"name": "loss"},
            "tags": ["grid", "iris"],
        }
        r = await api.post("/v1/sweeps", json=body)
        assert r.status_code == 201, r.text
        sweep = r.json()
        assert sweep["tags"] == ["grid", "iris"]
        trials = (await api.get("/v1/jobs", params={"sweep_id": sweep["id"]})).json()["items"]
        assert len(trials) == 2 and all(t["tags"] == ["iris", "grid"] for t in trials)
        assert await ids(api, tag="grid") == [t["id"] for t in trials]


class TestFilters:
    async def test_every_tag_must_match(self, api: Api) -> None:
        a = (await api.post("/v1/jobs", json=spec_factory(tags=["x", "y"]))).json()["id"]
        b = (await api.post("/v1/jobs", json=spec_factory(tags=["x"]))).json()["id"]
        await api.post("/v1/jobs", json=spec_factory(tags=["X"]))  # case counts
        assert await ids(api, tag="x") == [b, a]
        assert await ids(api, tag=["x", "y"]) == [a]
        assert await ids(api, tag=["y", "z"]) == []

    async def test_name_exactly_or_by_prefix(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        now = utcnow()
        names = ["mnist-a", "mnist-b", "MNIST-c", "mnist", "mnist_%"]
        made = {n: job_factory(name=n, created_at=now + timedelta(seconds=i)).id
                for i, n in enumerate(names)}  # fmt: skip
        job_factory(name=None)
        assert await ids(api, name="mnist") == [made["mnist"]]
        assert await ids(api, name="mnist-*") == [made["mnist-b"], made["mnist-a"]]
        assert await ids(api, name="mnist_*") == [made["mnist_%"]]  # no LIKE wildcards
        assert len(await ids(api, name="*")) == len(names)

    async def test_any_of_several_statuses(self, api: Api, job_factory: Callable[..., Job]) -> None:
        done = job_factory(status=SUCCEEDED).id
        failed = job_factory(status=FAILED).id
        job_factory(status=QUEUED)
        assert set(await ids(api, status=["succeeded", "failed"])) == {done, failed}

    async def test_created_after_and_before_are_half_open(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        start = utcnow().replace(microsecond=0)
        made = [job_factory(created_at=start + timedelta(hours=i)).id for i in range(3)]
        window = {
            "created_after": (start + timedelta(hours=1)).isoformat(),
            "created_before": (start + timedelta(hours=2)).isoformat(),
        }
        assert await ids(api, **window) == [made[1]]
        east = (start + timedelta(hours=1)).astimezone().isoformat()  # another offset, same time
        assert await ids(api, created_after=east) == [made[2], made[1]]

    @pytest.mark.parametrize("field", ["created_after", "created_before"])
    async def test_a_time_without_its_zone_or_not_iso_is_422_naming_the_field(
        self, api: Api, field: str
    ) -> None:
        for naive in ("2026-12-06", "2026-12-06T10:00:00", "0.5", "1765000000"):
            r = await api.get("/v1/jobs", params={field: naive})
            assert r.status_code == 422
            assert r.json()["detail"][0]["loc"] == ["query", field]

    async def test_filters_combine(self, api: Api, job_factory: Callable[..., Job]) -> None:
        job_factory(name="a", status=SUCCEEDED)
        wanted = job_factory(name="a", status=FAILED).id
        assert await ids(api, name="a", status="failed") == [wanted]


def with_metrics(
    job_factory: Callable[..., Job], values: list[float | None], metric: str = "val_loss"
) -> list[str]:
    """A job per value (``None``: no such metric), created in order, one second apart."""
    now = utcnow()
    made = []
    for i, value in enumerate(values):
        metrics = {"loss": 1.0} if value is None else {"loss": 1.0, metric: value}
        made.append(job_factory(metrics=metrics, created_at=now + timedelta(seconds=i)).id)
    return made


class TestSort:
    VALUES: list[float | None] = [0.5, None, 0.2, 0.5, None, 0.9, 0.2, 0.1]

    @pytest.mark.parametrize("limit", [1, 3, 50])
    async def test_by_a_metric_either_way_pages_every_job_once(
        self, api: Api, job_factory: Callable[..., Job], limit: int
    ) -> None:
        made = with_metrics(job_factory, self.VALUES)
        never_ran = job_factory(metrics=None, created_at=utcnow() + timedelta(hours=1)).id
        made.append(never_ran)
        newest_first = list(reversed(range(len(made))))
        values = [*self.VALUES, None]

        def expected(descending: bool) -> list[str]:
            have = {i: v for i in newest_first if (v := values[i]) is not None}
            ranked = sorted(have, key=lambda i: -have[i] if descending else have[i])  # stable
            return [made[i] for i in ranked] + [made[i] for i in newest_first if i not in have]

        assert await ids(api, sort="val_loss", limit=limit) == expected(False)
        assert await ids(api, sort="-val_loss", limit=limit) == expected(True)

    async def test_oldest_first_and_the_default_newest_first(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        made = with_metrics(job_factory, [None] * 5)
        assert await ids(api, sort="created_at", limit=2) == made
        assert await ids(api, sort="-created_at", limit=2) == made[::-1]
        assert await ids(api, limit=2) == made[::-1]

    async def test_a_cursor_of_another_sort_is_422(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        with_metrics(job_factory, [0.1, 0.2, 0.3])
        cursors = {}
        for sort in ("val_loss", "-val_loss", "-created_at", "created_at"):
            cursors[sort] = (await api.get("/v1/jobs", params={"sort": sort, "limit": 1})).json()[
                "next_cursor"
            ]
        for made_for, cursor in cursors.items():
            for sort in cursors:
                r = await api.get("/v1/jobs", params={"sort": sort, "cursor": cursor})
                if sort == made_for:
                    assert r.status_code == 200, r.text
                else:
                    assert r.status_code == 422, (made_for, sort)
                    assert r.json()["loc"] == ["query", "cursor"]

    @pytest.mark.parametrize("key", [[10**400, "2026-12-06T00:00:00+00:00", "a"], ["x", "y", "z"]])
    async def test_a_forged_cursor_is_422(self, api: Api, key: list[Any]) -> None:
        cursor = paging.encode_cursor({"o": "val_loss", "k": key})
        r = await api.get("/v1/jobs", params={"sort": "val_loss", "cursor": cursor})
        assert r.status_code == 422 and r.json()["loc"] == ["query", "cursor"]

    @pytest.mark.parametrize("sort", ["val loss", "--x", "", "1abc"])
    async def test_a_sort_that_is_not_a_name_is_422(self, api: Api, sort: str) -> None:
        r = await api.get("/v1/jobs", params={"sort": sort})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "sort"]

    async def test_sorted_and_filtered_together(
        self, api: Api, job_factory: Callable[..., Job]
    ) -> None:
        made = with_metrics(job_factory, [0.3, 0.1, 0.2])
        job_factory(status=FAILED, metrics={"val_loss": 0.0})
        assert await ids(api, sort="val_loss", status="queued", limit=1) == [
            made[1],
            made[2],
            made[0],
        ]
