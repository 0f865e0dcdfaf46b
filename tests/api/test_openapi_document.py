"""The OpenAPI document states what the job spec enforces (service/spec/json_schema.py):
each list of names is its table's, the bounds are the spec's and the service's, and a
spec drawn from the document is refused only for a rule between fields
(``tests/fuzz/spec_cases.CROSS_FIELD``, listed in docs/reliability.md), never for a
name, a bound or a shape the document could have stated. In process: the document of
an app, specs drawn by schemathesis as it draws them against the live API
(tests/fuzz) and parsed as ``POST /v1/jobs`` parses them."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation import GenerationMode

from fitq.service import spec as specs
from fitq.service.api.app import create_app
from fitq.service.errors import InvalidSpec
from fitq.service.jobs.submission import spec_limits
from fitq.service.settings import Settings
from fitq.service.spec import json_schema
from fitq.service.spec.base import name_key
from fitq.service.spec.layers import LAYER_CLASSES
from tests.fuzz.spec_cases import CROSS_FIELD, made_real, refusals
from tests.support.specs import spec_factory

SPEC_EXAMPLES = 60
"""Specs drawn from the document per run (derandomized; an exploratory run with more:
docs/reliability.md, "API fuzzing")."""


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(Settings(database_url="sqlite:///unused.db", max_epochs=500, max_priority=7))
    return app.openapi()


def schemas(document: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"]


class TestNames:
    def test_each_listed_name_resolves_to_its_tables_name(self) -> None:
        for kind, table in json_schema.name_tables().items():
            listed = json_schema.bare_name(kind)["enum"]
            assert {name_key(name) for name in listed} == set(table), kind
            assert len(listed) == len(table), kind  # one spelling per name the table knows

    def test_names_resolve_as_the_spec_reads_them(self) -> None:
        """Listed spellings, and others (Keras' class names), pass the spec; a name the
        lists lack does not."""
        layer = {"type": "Dense", "units": 3, "activation": "swish",
                 "kernel_initializer": "HeNormal", "kernel_constraint": "MaxNorm"}  # fmt: skip
        spec = specs.parse_spec(
            spec_factory(
                layers=[{"type": "dense", "units": 4, "activation": "LeakyReLU"}, layer],
                compile={"optimizer": "RMSprop", "loss": "huber_loss", "metrics": ["MAE"]},
            )
        )
        assert spec.model.layers[1].activation == "silu"
        with pytest.raises(InvalidSpec, match="unknown optimizer 'adamx'"):
            specs.parse_spec(spec_factory(compile={"optimizer": "adamx", "loss": "mse"}))

    def test_a_monitor_is_loss_or_a_metric(self, document: dict[str, Any]) -> None:
        monitor = schemas(document)["EarlyStopping"]["properties"]["monitor"]
        assert {"loss", "val_loss", "accuracy", "val_acc", "val_auc"} <= set(monitor["enum"])
        assert monitor["default"] in monitor["enum"]


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

    def test_null_is_stated_where_the_spec_takes_it(self, document: dict[str, Any]) -> None:
        """Keras writes no activation as null; a model's input_dim or input_shape may be
        null beside the other."""
        parts = schemas(document)
        assert {"type": "null"} in parts["Dense"]["properties"]["activation"]["anyOf"]
        for kind, meaning in json_schema.NULL_NAMES.items():
            assert kind == "activation"
            layer = {"type": "dense", "units": 3, "activation": None}
            spec = specs.parse_spec(spec_factory(layers=[layer]))
            assert spec.model.layers[0].activation == meaning
        spec = specs.parse_spec({**spec_factory(), "model": {**spec_factory()["model"],
                                 "input_shape": None}})  # fmt: skip
        assert spec.model.input_shape == [4]

    def test_an_axis_is_an_integer_not_a_boolean(self) -> None:
        """schemathesis' boundary cases sent ``axis: false``, which the spec read as 0."""
        layer = {"type": "dense", "units": 3, "kernel_constraint": {"name": "max_norm"}}
        for axis in (False, True):
            layer["kernel_constraint"]["axis"] = axis
            with pytest.raises(InvalidSpec, match="axis: must be an integer"):
                specs.parse_spec(spec_factory(layers=[layer]))

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
        body = made_real(case.body)
        assert refusals(body) <= CROSS_FIELD, (refusals(body), body)

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
