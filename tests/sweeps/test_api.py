"""/v1/sweeps against the real API and database: create (grid, random, refusals
that leave nothing behind, the quota), read, list, trials, cancel, the owner check."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fitq.service.settings import Settings
from tests.conftest import Owner
from tests.sweeps.conftest import Counts, claim, epoch, fail, finish, sweep_body

pytestmark = pytest.mark.anyio


async def create(
    client: httpx.AsyncClient, owner: Owner, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/v1/sweeps", json=body or sweep_body(), headers=owner.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def get(client: httpx.AsyncClient, owner: Owner, path: str) -> Any:
    response = await client.get(path, headers=owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


class TestCreate:
    async def test_a_grid_queues_a_job_per_combination(
        self, client: httpx.AsyncClient, owner: Owner
    ) -> None:
        response = await client.post("/v1/sweeps", json=sweep_body(), headers=owner.headers)
        assert response.status_code == 201, response.text
        sweep = response.json()
        assert response.headers["location"] == f"/v1/sweeps/{sweep['id']}"
        assert sweep["status"] == "queued" and sweep["name"] == "lr-and-width"
        assert sweep["trials"] == {
            "total": 4,
            "queued": 4,
            "running": 0,
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
        }
        assert sweep["best"] is None and sweep["finished_at"] is None
        assert sweep["metric"] == {"name": "loss", "goal": "minimize"}
        assert sweep["method"] == "grid" and sweep["early_terminate"] is None
        assert sweep["parameters"] == sweep_body()["parameters"]

        jobs = (await get(client, owner, f"/v1/jobs?sweep_id={sweep['id']}"))["items"]
        combos = {
            (
                j["spec"]["compile"]["optimizer"]["learning_rate"],
                j["spec"]["model"]["layers"][0]["units"],
            )
            for j in jobs
        }
        assert combos == {(0.001, 4), (0.001, 8), (0.01, 4), (0.01, 8)}
        assert {j["sweep_id"] for j in jobs} == {sweep["id"]}
        assert all(j["status"] == "queued" and j["pack"] is None for j in jobs)
        assert sorted(j["name"] for j in jobs) == [f"lr-and-width-{n}" for n in range(4)]
        trials = (await get(client, owner, f"/v1/sweeps/{sweep['id']}/trials"))["items"]
        assert [t["number"] for t in trials] == [0, 1, 2, 3]  # no values yet: trial order
        assert trials[0]["params"] == {
            "compile.optimizer.learning_rate": 0.001,
            "model.layers.0.units": 4,
        }
        assert {(t["status"], t["value"], t["epochs"], t["pruned"]) for t in trials} == {
            ("queued", None, 0, False)
        }

    async def test_random_draws_max_trials_and_repeats_with_its_seed(
        self, client: httpx.AsyncClient, owner: Owner
    ) -> None:
        body = sweep_body(
            method="random",
            max_trials=5,
            seed=3,
            parameters={
                "compile.optimizer.learning_rate": {
                    "distribution": "log_uniform",
                    "min": 1e-4,
                    "max": 1e-1,
                },
                "model.layers.0.units": {"distribution": "int_uniform", "min": 2, "max": 16},
            },
        )
        drawn = []
        for _ in range(2):
            sweep = await create(client, owner, body)
            assert sweep["trials"]["total"] == 5 and sweep["method"] == "random"
            trials = (await get(client, owner, f"/v1/sweeps/{sweep['id']}/trials"))["items"]
            drawn.append([t["params"] for t in trials])
        assert drawn[0] == drawn[1]
        for params in drawn[0]:
            assert 1e-4 <= params["compile.optimizer.learning_rate"] <= 1e-1
            assert params["model.layers.0.units"] in range(2, 17)

    async def test_one_bad_combination_is_a_422_naming_it_and_nothing_is_created(
        self, client: httpx.AsyncClient, owner: Owner, counts: Callable[[], Counts]
    ) -> None:
        before = counts()
        body = sweep_body(
            parameters={
                "compile.optimizer.learning_rate": {"values": [0.01, -1]},
                "model.layers.0.units": {"values": [4]},
            }
        )
        response = await client.post("/v1/sweeps", json=body, headers=owner.headers)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert "compile.optimizer.learning_rate=-1" in detail and "model.layers.0.units=4" in detail
        assert response.json()["loc"][:2] == ["body", "spec"]
        assert counts() == before

    async def test_a_combination_that_does_not_fit_the_data_is_refused(
        self, client: httpx.AsyncClient, owner: Owner, counts: Callable[[], Counts]
    ) -> None:
        """The check against the dataset is the job submission's own: iris has 4 features."""
        before = counts()
        body = sweep_body(parameters={"model.input_dim": {"values": [4, 5]}})
        response = await client.post("/v1/sweeps", json=body, headers=owner.headers)
        assert response.status_code == 422
        assert "model.input_dim=5" in response.json()["detail"]
        assert counts() == before

    async def test_another_keys_dataset_is_a_404_and_nothing_is_created(
        self,
        client: httpx.AsyncClient,
        owner: Owner,
        make_owner: Callable[..., Owner],
        dataset_factory: Callable[..., Any],
        counts: Callable[[], Counts],
    ) -> None:
        theirs = dataset_factory(owner_id=make_owner().id)
        before = counts()
        body = sweep_body(parameters={"dataset_id": {"values": ["iris", theirs.id]}})
        response = await client.post("/v1/sweeps", json=body, headers=owner.headers)
        assert response.status_code == 404
        assert f"dataset_id={theirs.id!r}" in response.json()["detail"]
        assert counts() == before

    async def test_a_metric_the_history_lacks_is_a_422(
        self, client: httpx.AsyncClient, owner: Owner, counts: Callable[[], Counts]
    ) -> None:
        before = counts()
        body = sweep_body(metric={"name": "val_loss", "goal": "minimize"})
        response = await client.post("/v1/sweeps", json=body, headers=owner.headers)
        assert response.status_code == 422
        assert response.json()["loc"] == ["body", "metric", "name"]
        assert "needs validation data" in response.json()["detail"]

        body = sweep_body(metric={"name": "val_loss"})
        body["parameters"] = {"fit.validation_split": {"values": [0.2, 0]}}
        response = await client.post("/v1/sweeps", json=body, headers=owner.headers)
        assert response.status_code == 422
        assert "the trial with fit.validation_split=0" in response.json()["detail"]
        assert counts() == before

    async def test_the_metric_takes_keras_spellings(
        self, client: httpx.AsyncClient, owner: Owner
    ) -> None:
        body = sweep_body(metric={"name": "val_acc", "goal": "maximize"})
        body["spec"]["fit"]["validation_split"] = 0.2
        sweep = await create(client, owner, body)
        assert sweep["metric"] == {"name": "val_accuracy", "goal": "maximize"}

    @pytest.mark.parametrize(
        ("body", "loc", "words"),
        [
            (
                sweep_body(parameters={"seed": {"distribution": "uniform", "min": 0, "max": 1}}),
                ["body"],
                "use method 'random'",
            ),
            (sweep_body(method="random"), ["body"], "needs max_trials"),
            (sweep_body(parameters={}), ["body", "parameters"], "at least 1"),
            (
                sweep_body(metric={"name": "loss", "goal": "up"}),
                ["body", "metric", "goal"],
                "one of",
            ),
            (["not", "an", "object"], ["body"], "JSON object"),
        ],
    )
    async def test_a_bad_body_is_a_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        owner: Owner,
        counts: Callable[[], Counts],
        body: Any,
        loc: list[str],
        words: str,
    ) -> None:
        before = counts()
        response = await client.post("/v1/sweeps", json=body, headers=owner.headers)
        assert response.status_code == 422, response.text
        assert response.json()["loc"] == loc and words in response.json()["detail"]
        assert counts() == before

    async def test_malformed_json_is_a_422(self, client: httpx.AsyncClient, owner: Owner) -> None:
        response = await client.post(
            "/v1/sweeps",
            content=b"{not json",
            headers={**owner.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422 and "not valid JSON" in response.json()["detail"]


class TestQuota:
    LIMIT = 5

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_queued_jobs_per_key": self.LIMIT})

    async def test_a_sweep_over_the_queued_jobs_quota_is_refused_whole(
        self, client: httpx.AsyncClient, owner: Owner, counts: Callable[[], Counts]
    ) -> None:
        await create(client, owner)  # 4 of 5
        before = counts()
        response = await client.post("/v1/sweeps", json=sweep_body(), headers=owner.headers)
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["detail"].startswith(
            f"this key has 4 jobs queued, the limit of {self.LIMIT} (FITQ_MAX_QUEUED_JOBS_PER_KEY)"
            "; 4 more would pass it"
        )
        assert counts() == before
        one = sweep_body(parameters={"seed": {"values": [1]}})
        assert (await client.post("/v1/sweeps", json=one, headers=owner.headers)).status_code == 201


class TestOwner:
    @pytest.mark.parametrize(
        ("method", "suffix"), [("GET", ""), ("GET", "/trials"), ("POST", "/cancel")]
    )
    async def test_another_keys_sweep_is_not_found(
        self,
        client: httpx.AsyncClient,
        owner: Owner,
        make_owner: Callable[..., Owner],
        method: str,
        suffix: str,
    ) -> None:
        sweep = await create(client, owner)
        other = make_owner()
        response = await client.request(
            method, f"/v1/sweeps/{sweep['id']}{suffix}", headers=other.headers
        )
        assert response.status_code == 404
        assert response.json()["detail"] == f"no sweep with id {sweep['id']!r}"
        missing = await client.request(method, f"/v1/sweeps/nope{suffix}", headers=owner.headers)
        assert missing.json()["detail"] == "no sweep with id 'nope'"
        assert (await get(client, other, "/v1/sweeps"))["items"] == []
        assert (await get(client, other, f"/v1/jobs?sweep_id={sweep['id']}"))["items"] == []
        refused = await client.request(method, f"/v1/sweeps/{sweep['id']}{suffix}")
        assert refused.status_code == 401


class TestList:
    async def test_newest_first_in_pages(self, client: httpx.AsyncClient, owner: Owner) -> None:
        made = [(await create(client, owner, sweep_body(name=f"s{i}")))["id"] for i in range(3)]
        first = await get(client, owner, "/v1/sweeps?limit=2")
        assert [s["id"] for s in first["items"]] == made[::-1][:2]
        rest = await get(client, owner, f"/v1/sweeps?limit=2&cursor={first['next_cursor']}")
        assert [s["id"] for s in rest["items"]] == made[:1] and rest["next_cursor"] is None
        assert first["items"][0]["trials"]["total"] == 4

    async def test_a_foreign_cursor_is_a_422(self, client: httpx.AsyncClient, owner: Owner) -> None:
        sweep = await create(client, owner)
        for path in ("/v1/sweeps", f"/v1/sweeps/{sweep['id']}/trials"):
            response = await client.get(f"{path}?cursor=abc", headers=owner.headers)
            assert response.status_code == 422
            assert response.json()["loc"] == ["query", "cursor"]


class TestStatus:
    async def test_queued_running_then_succeeded_with_the_best_trial(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        sweep = await create(client, owner, sweep_body(parameters={"seed": {"values": [0, 1]}}))
        path = f"/v1/sweeps/{sweep['id']}"
        first, attempt = claim(database_url)
        assert (await get(client, owner, path))["status"] == "running"
        epoch(database_url, first, attempt, 1, loss=0.9)
        epoch(database_url, first, attempt, 2, loss=0.4)
        epoch(database_url, first, attempt, 3, loss=0.5)  # the value is the best epoch's
        finish(database_url, first, attempt)
        running = await get(client, owner, path)
        assert running["status"] == "running" and running["finished_at"] is None
        assert running["best"]["job_id"] == first and running["best"]["value"] == 0.4
        second, attempt = claim(database_url)
        fail(database_url, second, attempt)
        done = await get(client, owner, path)
        assert done["status"] == "succeeded" and done["finished_at"] is not None
        assert done["trials"]["succeeded"] == 1 and done["trials"]["failed"] == 1
        assert done["best"]["params"] in ({"seed": 0}, {"seed": 1})

    async def test_all_failed_is_failed(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        sweep = await create(client, owner, sweep_body(parameters={"seed": {"values": [0, 1]}}))
        for _ in range(2):
            fail(database_url, *claim(database_url))
        body = await get(client, owner, f"/v1/sweeps/{sweep['id']}")
        assert body["status"] == "failed" and body["best"] is None

    async def test_a_running_trials_value_is_not_yet_the_best(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        """``best`` is a trial with a model: a succeeded one."""
        sweep = await create(client, owner, sweep_body(parameters={"seed": {"values": [0]}}))
        job_id, attempt = claim(database_url)
        epoch(database_url, job_id, attempt, 1, loss=0.3)
        body = await get(client, owner, f"/v1/sweeps/{sweep['id']}")
        assert body["best"] is None
        trials = await get(client, owner, f"/v1/sweeps/{sweep['id']}/trials")
        assert trials["items"][0]["value"] == 0.3 and trials["items"][0]["epochs"] == 1


class TestTrials:
    async def test_best_first_ties_in_trial_order_unranked_last(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        body = sweep_body(parameters={"seed": {"values": [0, 1, 2, 3, 4]}})
        body["metric"] = {"name": "accuracy", "goal": "maximize"}
        sweep = await create(client, owner, body)
        accuracy = {1: 0.7, 2: 0.9, 3: 0.7}  # by seed; seeds 0 and 4 never report
        for _ in range(5):
            job_id, attempt = claim(database_url)
            seed = (await get(client, owner, f"/v1/jobs/{job_id}"))["spec"]["seed"]
            if seed in accuracy:
                epoch(database_url, job_id, attempt, 1, loss=1.0, accuracy=accuracy[seed])
        ranked = (await get(client, owner, f"/v1/sweeps/{sweep['id']}/trials"))["items"]
        assert [t["params"]["seed"] for t in ranked] == [2, 1, 3, 0, 4]
        assert [t["value"] for t in ranked] == [0.9, 0.7, 0.7, None, None]
        assert {t["status"] for t in ranked} == {"running"}

        paged = await get(client, owner, f"/v1/sweeps/{sweep['id']}/trials?limit=2")
        seen = [t["params"]["seed"] for t in paged["items"]]
        while paged["next_cursor"]:
            paged = await get(
                client,
                owner,
                f"/v1/sweeps/{sweep['id']}/trials?limit=2&cursor={paged['next_cursor']}",
            )
            seen += [t["params"]["seed"] for t in paged["items"]]
        assert seen == [2, 1, 3, 0, 4]


class TestCancel:
    async def test_cancels_every_trial_not_ended_and_is_idempotent(
        self, client: httpx.AsyncClient, owner: Owner, database_url: str
    ) -> None:
        sweep = await create(client, owner, sweep_body(parameters={"seed": {"values": [0, 1, 2]}}))
        done, attempt = claim(database_url)
        finish(database_url, done, attempt)
        running, _ = claim(database_url)
        path = f"/v1/sweeps/{sweep['id']}"
        for _ in range(2):
            response = await client.post(f"{path}/cancel", headers=owner.headers)
            assert response.status_code == 202
            body = response.json()
            assert body["trials"]["cancelled"] == 1 and body["trials"]["running"] == 1
            assert body["trials"]["succeeded"] == 1 and body["status"] == "running"
        job = await get(client, owner, f"/v1/jobs/{running}")
        assert job["cancel_requested"] is True
        assert (await get(client, owner, f"/v1/jobs/{done}"))["status"] == "succeeded"

    async def test_a_cancelled_sweep_with_no_success_is_cancelled(
        self, client: httpx.AsyncClient, owner: Owner
    ) -> None:
        sweep = await create(client, owner)
        response = await client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=owner.headers)
        body = response.json()
        assert body["status"] == "cancelled" and body["trials"]["cancelled"] == 4
        assert body["finished_at"] is not None


def test_sweep_body_is_not_shared() -> None:
    """``sweep_body`` builds a fresh body each call (tests mutate theirs)."""
    a, b = sweep_body(), sweep_body()
    a["spec"]["fit"]["epochs"] = 99
    assert b["spec"]["fit"]["epochs"] != 99 and copy.deepcopy(b) == sweep_body()
