"""The job spec's boundary cases, in process: every case schemathesis' coverage phase
makes from the body of ``POST /v1/jobs`` in the OpenAPI document (each bound at and
past its edge, each name and type wrong, each required key missing…), read as the API
reads a spec (``untrusted.loads``, then ``parse_spec``). A body the document refuses is
refused (the API's 422, never another exception: a 500); one it allows is refused only
for a rule between fields (``spec_cases.CROSS_FIELD``).

These cases were most of the live fuzzing's requests (test_openapi_fuzz.py); there
the spec body gets schemathesis' random cases, here all its boundary cases, without
HTTP or a database."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override

from fitq.service import spec as specs
from fitq.service import untrusted
from fitq.service.api.app import create_app
from fitq.service.errors import InvalidInput
from fitq.service.settings import Settings
from tests.fuzz.spec_cases import CROSS_FIELD, made_real, refusals

pytestmark = pytest.mark.slow


def boundary_cases() -> list[Any]:
    """The coverage phase's cases of ``POST /v1/jobs``, positive and negative."""
    # The service's bounds as the spec's own: parse_spec applies the spec's (the API
    # applies the service's after it, which the live fuzzing reaches).
    settings = Settings(database_url="sqlite:///unused.db", max_job_seconds=2**31 - 1)
    document = create_app(settings).openapi()
    operation = schemathesis.openapi.from_dict(document)["/v1/jobs"]["POST"]
    generation = operation.schema.config.generation_for(operation=operation, phase="coverage")
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=generation.modes,
        generation_config=generation,
        auth_storage=None,
        override=Override(),
        feedback=FeedbackSources(),
    )
    return list(generator)


def test_every_boundary_of_the_spec_is_where_the_document_says() -> None:
    cases = boundary_cases()
    seen = {"positive": 0, "negative": 0}
    for case in cases:
        meta = case.meta
        if isinstance(case.body, NotSet):
            continue  # no body at all: the live fuzzing's
        if meta.generation.mode.is_negative:
            if not meta.is_negative_at(ParameterLocation.BODY):
                continue  # a header or a content type made wrong: the live fuzzing's
            seen["negative"] += 1
            with pytest.raises(InvalidInput):  # the API's 422
                specs.parse_spec(untrusted.loads(json.dumps(case.body).encode()))
        else:
            seen["positive"] += 1
            body = made_real(case.body)
            assert refusals(body) <= CROSS_FIELD, (refusals(body), body)
    assert seen["positive"] > 0 and seen["negative"] > 1000, seen
