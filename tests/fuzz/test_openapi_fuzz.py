"""OpenAPI fuzzing: schemathesis against the live API (`fitq api` under
uvicorn, PostgreSQL, a valid key), every operation, every check, and a
stateful run that follows the document's links (create → read, cancel,
delete, metrics, model, predict).

Every check includes ``positive_data_acceptance``: a request that fits the
document must not be refused. The document states what the API enforces
where a schema can (ids, cursors, no NUL, predict's rows and numbers, the
upload's fields, the job spec's names, bounds and layers); what only content
can say is made real before a case is sent, as a client would (``realistic``:
the live job and datasets for ids, a real CSV and its label column for an
upload, a cursor only the API makes, predict rows of the model's width, a real
Keras export in ``keras_json``). A job spec that fits the document may still
be refused for a rule between its fields or for its fit to its dataset: there
the check is that the refusal is one of those (``refused_for_content``); a
sweep body is left out of it (a sweep's ranges relate two fields each).
docs/reliability.md, "API fuzzing", lists what remains.

Cases are bounded and derandomized so that CI is reproducible and the module
takes about a minute; the exploratory run (thousands of cases) and its
findings are in docs/reliability.md, "API fuzzing". Each finding has a
regression test in test_findings.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case
from schemathesis.config import HttpBearerAuthConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fuzz.live import FEATURES, LiveApi, csv_bytes, live_api
from tests.fuzz.spec_cases import CROSS_FIELD, made_real, refusals

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SCALE = int(os.environ.get("FITQ_FUZZ_SCALE", "1"))
"""Multiplies every number of cases below; above 1 the run is random rather
than derandomized (an exploratory run: docs/reliability.md, "API fuzzing")."""
EXAMPLES_PER_OPERATION = 25 * SCALE
STREAM_EXAMPLES = 5 * SCALE
"""The event streams answer a valid request with a stream that stays open
until ``STREAM_SECONDS`` have passed: fewer cases there."""
STATEFUL_SCENARIOS = 15 * SCALE
STATEFUL_STEPS = 6
REQUEST_TIMEOUT_SECONDS = 30.0
STREAM_SECONDS = 1.0
"""How long an event stream is read (its silence ends the read sooner)."""
EXCLUDED_CHECKS: list[str] = []
SPEC_BODIES = {("POST", "/v1/jobs"), ("POST", "/v1/sweeps")}
"""Where ``positive_data_acceptance`` is not run as it is: a job spec that fits the
document is still refused for a rule between its fields or when it does not fit its
dataset (``input_dim``, the classes, the loss for the task); ``refused_for_content``
checks a job spec's refusal instead."""
JOB_SPECS = ("POST", "/v1/jobs")
"""Fuzzed without the coverage phase here: its thousands of boundary cases run in
process (test_spec_boundaries.py), at a tenth of the cost."""
PREDICT_INPUT_BOUND = 1e6
"""Positive predict inputs are clipped to this: past it the model's outputs may
overflow float32 (a 422 naming the row), which depends on the weights."""
STREAMS = r"/events$"

FUZZ_SETTINGS = dict(
    deadline=None,
    derandomize=SCALE == 1,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with live_api(tmp_path_factory.mktemp("fuzz")) as api:
        yield api


@pytest.fixture(scope="module")
def api_schema(live: LiveApi) -> BaseSchema:
    """The live document, the key for its bearer scheme, all checks but one.

    The key goes through the scheme (not a fixed header), so that schemathesis
    knows it and can try each request without it or with a wrong one."""
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    schema.config.auth.openapi.schemes["HTTPBearer"] = HttpBearerAuthConfig(bearer=live.key)
    schema.config.update(request_timeout=REQUEST_TIMEOUT_SECONDS)
    schema.config.checks.update(included_check_names=["all"], excluded_check_names=EXCLUDED_CHECKS)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 renames each operation's subtest through the node's
    ``_nodeid``, an attribute pytest 9.2 no longer has: give it one."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def realistic(case: Case, live: LiveApi, *, ids: bool) -> None:
    """Point a schema-valid case at real things, so it gets past "404 no such
    id": the live job and datasets for path ids (``ids``; the stateful run
    takes them from links instead), a real CSV for an upload, a real dataset
    in a job spec. Parts generated as negative data are left as they are."""
    meta = case.meta

    def positive(location: ParameterLocation) -> bool:
        if meta is None:
            return True
        return not meta.generation.mode.is_negative and not meta.is_negative_at(location)

    if ids and case.path_parameters and positive(ParameterLocation.PATH):
        delete = case.method.upper() == "DELETE"
        if "job_id" in case.path_parameters:
            case.path_parameters["job_id"] = live.spare_job_id if delete else live.job_id
        if "dataset_id" in case.path_parameters:
            case.path_parameters["dataset_id"] = (
                live.spare_dataset_id if delete else live.dataset_id
            )
    if case.query and "cursor" in case.query and positive(ParameterLocation.QUERY):
        del case.query["cursor"]  # opaque: valid only as the API returned it
    if not isinstance(case.body, dict) or not positive(ParameterLocation.BODY):
        return
    path, method = case.operation.path, case.method.upper()
    if (method, path) == ("POST", "/v1/datasets") and "file" in case.body:
        case.body["file"] = csv_bytes(2)
        if "label" in case.body:
            case.body["label"] = "label"  # a column of that file
    elif (
        (method, path) == JOB_SPECS
        and "dataset_id" in case.body
        or path.endswith("/evaluate")
        and "dataset_id" in case.body
    ):
        case.body["dataset_id"] = live.dataset_id
        if (method, path) == JOB_SPECS:
            case.body = made_real(case.body)
    elif path.endswith("/predict") and isinstance(case.body.get("inputs"), list):
        rows = case.body["inputs"]
        if all(isinstance(r, list) for r in rows):  # the model's width: cut or pad with 0
            bound = PREDICT_INPUT_BOUND
            case.body["inputs"] = [
                [max(-bound, min(bound, v)) for v in (r + [0.0] * FEATURES)[:FEATURES]]
                for r in rows
            ]


def excluded(case: Case) -> list[Any]:
    """The checks not run for ``case``: positive data acceptance on a spec body."""
    if (case.method.upper(), case.operation.path) in SPEC_BODIES:
        return [positive_data_acceptance]
    return []


def refused_for_content(case: Case, response: Any) -> None:
    """A job spec the document allows, refused: the spec must find only rules between
    its fields in it (or nothing, and the refusal is its fit to its dataset)."""
    if (case.method.upper(), case.operation.path) != JOB_SPECS:
        return
    meta = case.meta
    positive = meta is None or not (
        meta.generation.mode.is_negative or meta.is_negative_at(ParameterLocation.BODY)
    )
    if positive and response.status_code == 422 and isinstance(case.body, dict):
        assert refusals(case.body) <= CROSS_FIELD, (response.text, case.body)


def call_kwargs(case: Case) -> dict[str, Any]:
    """An event stream is read for ``STREAM_SECONDS``; anything else may take
    up to ``REQUEST_TIMEOUT_SECONDS``."""
    streams = re.search(STREAMS, case.operation.path) is not None
    return {"timeout": STREAM_SECONDS if streams else REQUEST_TIMEOUT_SECONDS}


@schema.exclude(path_regex=STREAMS).exclude(method=JOB_SPECS[0], path=JOB_SPECS[1]).parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, **FUZZ_SETTINGS)  # type: ignore[arg-type]
def test_every_operation(case: Case, live: LiveApi) -> None:
    realistic(case, live, ids=True)
    case.call_and_validate(excluded_checks=excluded(case), **call_kwargs(case))


@schema.include(method=JOB_SPECS[0], path=JOB_SPECS[1]).parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    phases=[Phase.generate],  # no coverage phase: test_spec_boundaries.py
    **FUZZ_SETTINGS,  # type: ignore[arg-type]
)
def test_job_specs(case: Case, live: LiveApi) -> None:
    realistic(case, live, ids=True)
    response = case.call_and_validate(excluded_checks=excluded(case), **call_kwargs(case))
    refused_for_content(case, response)


@schema.include(path_regex=STREAMS).parametrize()
@settings(max_examples=STREAM_EXAMPLES, **FUZZ_SETTINGS)  # type: ignore[arg-type]
def test_event_streams(case: Case, live: LiveApi) -> None:
    realistic(case, live, ids=True)
    case.call_and_validate(**call_kwargs(case))


def test_stateful_links(api_schema: BaseSchema, live: LiveApi) -> None:
    """Chains along the document's links: what a create returns is read,
    cancelled, deleted, predicted with; and read again after a delete."""

    class Machine(api_schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Case) -> None:
            realistic(case, live, ids=False)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return call_kwargs(case)

        def validate_response(
            self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=excluded(case),
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )
            refused_for_content(case, response)

    Machine.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            **FUZZ_SETTINGS,  # type: ignore[arg-type]
        )
    )


def test_the_api_logged_no_unhandled_error(live: LiveApi) -> None:
    """Last in the module: nothing the fuzzer sent raised past the handlers
    (a 500 is caught by the checks; this also catches a broken stream)."""
    text = live.log.read_text(errors="replace")
    assert "Traceback" not in text, text[text.index("Traceback") - 2000 :][:8000]
