"""to_onnx: the graph onnxruntime runs to fitq's outputs."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from fitq.service.errors import Conflict
from fitq.service.export.onnx_graph import OPSET, to_onnx
from tests.export.models import CASES, TOLERANCE, max_difference, model_file, trained


def session(onnxruntime: ModuleType, graph: bytes) -> Any:
    return onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])


class TestPredictions:
    @pytest.mark.parametrize("name", list(CASES))
    def test_equal_fitqs_predict(self, name: str, onnxruntime: ModuleType) -> None:
        t = trained(name)
        (got,) = session(onnxruntime, to_onnx(t.model_file)).run(["y"], {"x": t.x})
        assert max_difference(got, t.expected) <= TOLERANCE

    def test_any_number_of_rows(self, onnxruntime: ModuleType) -> None:
        t = trained("everything")
        run = session(onnxruntime, to_onnx(t.model_file)).run
        for rows in (1, 7, len(t.x)):
            (got,) = run(["y"], {"x": t.x[:rows]})
            assert max_difference(got, t.expected[:rows]) <= TOLERANCE

    def test_softplus_of_large_inputs_is_finite(self, onnxruntime: ModuleType) -> None:
        layers = [{"type": "activation", "activation": "softplus"}]
        graph = to_onnx(model_file(layers, {}))
        x = np.array([[-200.0, -20.0], [20.0, 200.0]], dtype=np.float32)
        (got,) = session(onnxruntime, graph).run(["y"], {"x": x})
        np.testing.assert_allclose(got, np.logaddexp(x, 0), rtol=1e-6, atol=1e-30)


class TestGraph:
    @pytest.mark.parametrize("name", list(CASES))
    def test_every_case_is_valid_onnx(self, name: str, onnx: ModuleType) -> None:
        proto = onnx.load_from_string(to_onnx(trained(name).model_file))
        onnx.checker.check_model(proto, full_check=True)

    def test_is_valid_onnx_at_the_standard_opset(self, onnx: ModuleType) -> None:
        proto = onnx.load_from_string(to_onnx(trained("everything").model_file))
        onnx.checker.check_model(proto, full_check=True)
        assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
        (x,) = proto.graph.input
        dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
        assert (x.name, dims) == ("x", ["N", 4])
        (y,) = proto.graph.output
        assert [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim] == ["N", 3]

    def test_keeps_fitqs_names_and_the_spec(self, onnx: ModuleType) -> None:
        t = trained("everything")
        proto = onnx.load_from_string(to_onnx(t.model_file))
        names = {i.name for i in proto.graph.initializer}
        assert {"normalization.mean", "layers.0.kernel", "layers.2.moving_variance"} <= names
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["fitq_spec"]) == t.spec

    def test_gelu_twice_shares_its_constants(self, onnx: ModuleType) -> None:
        gelu = {"type": "activation", "activation": "gelu"}
        proto = onnx.load_from_string(to_onnx(model_file([gelu, gelu], {})))
        onnx.checker.check_model(proto, full_check=True)


class TestRefusals:
    def test_an_activation_onnx_has_no_form_for(self) -> None:
        layers = [{"type": "activation", "activation": "relu6"}]
        with pytest.raises(Conflict, match="layer 0: activation 'relu6'"):
            to_onnx(model_file(layers, {}))
