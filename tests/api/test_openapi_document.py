"""The OpenAPI document states what the job spec enforces (service/spec/json_schema.py):
each name pattern matches exactly the spellings its table resolves, the bounds are the
service's, and a spec drawn from the document is refused only for a rule between
fields (``CROSS_FIELD``, listed in docs/reliability.md), never for a name, a bound or
a shape the document could have stated. In process: the document of an app, specs
parsed as ``POST /v1/jobs`` parses them; schemathesis draws the specs as it does
against the live API (tests/fuzz)."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis.generation import GenerationMode

from fitq.service import spec as specs
from fitq.service.api.app import create_app
from fitq.service.errors import InvalidSpec
from fitq.service.jobs.submission import spec_limits
from fitq.service.settings import Settings
from fitq.service.spec import json_schema
from fitq.service.spec.base import name_key
from fitq.service.spec.layers import LAYER_CLASSES
from tests.support.specs import spec_factory

KERAS_EXPORT = (Path(__file__).parents[2] / "examples" / "keras" / "digits_keras3.json").read_text()
"""A real ``model.to_json()``: what a client puts in ``keras_json`` (its content is
Keras', which the document leaves open)."""
NAME_CHARS = frozenset(string.ascii_lowercase + string.digits)
SPEC_EXAMPLES = 60
"""Specs drawn from the document per run (derandomized; an exploratory run with more:
docs/reliability.md, "API fuzzing")."""

CROSS_FIELD = frozenset(
    {
        "input_shape",  # input_dim is input_shape's product; a flatten before other layers
        "output_units",  # the last dense layer's units for the loss
        "output_activation",  # softmax over one unit
        "metric_loss",  # a metric the loss's targets fit
        "monitor",  # a callback watches a History key the spec logs
        "length",  # normalization: mean and variance as long as each other, one per feature
        "range",  # min ≤ max (initializers, constraints)
        "pieces",  # piecewise schedule: one value more than boundaries, increasing
        "too_large",  # the model's parameters (widths × units) under FITQ_MAX_PARAMETERS
        "gd_batch_size",  # optimizer 'gd' takes no batch_size
        "reduce_lr_schedule",  # reduce_lr_on_plateau with a scheduled learning rate
        "ftrl_schedule",  # ftrl with a schedule that reaches 0
    }
)
"""The spec's rules between fields: what a schema-valid spec may still be refused for."""


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(Settings(database_url="sqlite:///unused.db", max_epochs=500, max_priority=7))
    return app.openapi()


def schemas(document: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"]


class TestNamePatterns:
    def test_each_name_and_alias_matches_in_any_spelling(self) -> None:
        for kind, table in json_schema.name_tables().items():
            pattern = re.compile(json_schema.bare_name(kind)["pattern"])
            for key, canonical in table.items():
                for spelling in (key, canonical, canonical.upper(), f" {canonical.title()}-"):
                    assert pattern.search(spelling), (kind, spelling)

    @settings(max_examples=300, derandomize=True, database=None)
    @given(
        st.sampled_from(sorted(json_schema.name_tables())),
        st.text(alphabet=st.sampled_from("relusgdamKK\u212a_- \t\u3000\x1cx2.é"), max_size=12),
    )
    def test_a_pattern_matches_what_its_table_resolves_and_nothing_else(
        self, kind: str, text: str
    ) -> None:
        table = json_schema.name_tables()[kind]
        pattern = json_schema.bare_name(kind)["pattern"]
        assert (re.search(pattern, text) is not None) == (name_key(text) in table)

    def test_separators_and_cases_are_name_keys(self) -> None:
        """Every character ``name_key`` drops is a ``SEPARATOR``, and every character
        besides ASCII upper case that lowers to a name's letter is in ``OTHER_CASES``."""
        other: dict[str, str] = {}
        for point in range(0x110000):
            char = chr(point)
            dropped = name_key(char) == ""
            assert dropped == bool(re.fullmatch(json_schema.SEPARATOR, char)), hex(point)
            lower = char.lower()
            if char not in string.ascii_uppercase and char != lower and lower in NAME_CHARS:
                other[lower] = other.get(lower, "") + char
        assert other == json_schema.OTHER_CASES


class TestDocument:
    def test_no_string_of_the_spec_is_free(self, document: dict[str, Any]) -> None:
        """A name matches its table; the client's own text (ids, a job's name, Keras'
        export) holds no NUL."""
        free = set()
        for name, schema in schemas(document).items():
            for node in _nodes(schema, name):
                path, value = node
                if value.get("type") == "string" and not {"pattern", "enum", "const"} & set(value):
                    free.add(path)
        spec_parts = set(_spec_components(document))
        assert {p for p in free if p.split("/")[0] in spec_parts} == set()

    def test_layers_are_a_union_discriminated_by_type(self, document: dict[str, Any]) -> None:
        items = schemas(document)["ModelSpec"]["properties"]["layers"]["items"]
        assert items["discriminator"]["propertyName"] == "type"
        assert sorted(items["discriminator"]["mapping"]) == sorted(LAYER_CLASSES)
        assert len(items["oneOf"]) == len(LAYER_CLASSES)

    def test_bounds_are_the_specs_and_the_services(self, document: dict[str, Any]) -> None:
        parts = schemas(document)
        assert parts["FitSpec"]["properties"]["epochs"] == {
            **parts["FitSpec"]["properties"]["epochs"],
            "minimum": 1,
            "maximum": 500,
        }
        assert parts["JobSpec"]["properties"]["priority"]["maximum"] == 7
        assert parts["Dense"]["properties"]["units"]["minimum"] == 1
        assert parts["Dropout"]["properties"]["rate"] == {
            **parts["Dropout"]["properties"]["rate"],
            "minimum": 0,
            "exclusiveMaximum": 1,
        }
        limits = spec_limits(max_epochs=500)
        specs.parse_spec(spec_factory(fit={"epochs": 500}), limits=limits)
        with pytest.raises(InvalidSpec, match="FITQ_MAX_EPOCHS"):
            specs.parse_spec(spec_factory(fit={"epochs": 501}), limits=limits)

    def test_an_integral_number_is_an_integer(self) -> None:
        """JSON Schema's ``integer`` holds 3.0 (a client that computed it sends that)."""
        spec = specs.parse_spec(spec_factory(fit={"epochs": 3.0, "batch_size": 16.0}))
        assert (spec.fit.epochs, spec.fit.batch_size) == (3, 16)
        assert type(spec.fit.epochs) is int


def test_a_spec_the_document_allows_is_refused_only_across_fields(
    document: dict[str, Any],
) -> None:
    operation = schemathesis.openapi.from_dict(document)["/v1/jobs"]["POST"]

    @settings(
        max_examples=SPEC_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def check(case: Any) -> None:
        body = dict(case.body)
        if "keras_json" in body:
            body["keras_json"] = KERAS_EXPORT
        try:
            specs.JobSpec.model_validate(
                json_schema.integral_numbers(body), context={"limits": specs.DEFAULT_LIMITS}
            )
        except ValidationError as exc:
            assert {error["type"] for error in exc.errors()} <= CROSS_FIELD, exc

    check()


def _nodes(root: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    stack = [(path, root)]
    while stack:
        here, node = stack.pop()
        if isinstance(node, dict):
            out.append((here, node))
            stack.extend((f"{here}/{k}", v) for k, v in node.items() if k != "not")
        elif isinstance(node, list):
            stack.extend((f"{here}/{i}", v) for i, v in enumerate(node))
    return out


def _spec_components(document: dict[str, Any]) -> set[str]:
    """The components the job spec's schema reaches."""
    parts = schemas(document)
    seen, todo = set(), ["JobSpec"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for _, node in _nodes(parts[name], name):
            ref = node.get("$ref", "")
            if ref.startswith(json_schema.REF):
                todo.append(ref.removeprefix(json_schema.REF))
    return seen
