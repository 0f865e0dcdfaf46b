"""The model: a stack of layers on ``input_dim`` features, checked against the limits.

``input_shape`` is the shape of one input before it is stored as a flat row (Keras'
``Input(shape=(28, 28))``); ``input_dim`` is its size. Either may be given: the
normalized model has both (``[input_dim]`` for flat inputs). On a multi-dimensional
input only layers that act on each value alone may come before a ``flatten``: a Keras
layer such as Dense would act on the last axis only, which flat rows cannot express.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, model_validator

from fitq.service.spec.base import Strict, fail, limits_of
from fitq.service.spec.layers import (
    ELEMENTWISE,
    ActivationLayer,
    BatchNormalization,
    Dense,
    Layer,
    LayerNormalization,
    Normalization,
    PReLU,
)


def _shape_text(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


class ModelSpec(Strict):
    """A stack of layers on ``input_dim`` features; ``layers[i]`` is ``layers.{i}``."""

    # Never None once validated: ``_dims`` fills each from the other.
    input_dim: int = Field(default=None, ge=1)  # type: ignore[assignment]
    input_shape: list[Annotated[int, Field(ge=1)]] = Field(
        default=None,  # type: ignore[arg-type]
        min_length=1,
    )
    layers: list[Layer] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _dims(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        dim, shape = data.get("input_dim"), data.get("input_shape")
        if dim is None and shape is None:
            fail(("input_dim",), "missing", "is required (or input_shape)")
        if shape is None:
            return {**data, "input_shape": [dim]}
        if dim is None and isinstance(shape, list) and all(type(d) is int for d in shape):
            return {**data, "input_dim": math.prod(shape)}
        return data

    @model_validator(mode="after")
    def _shape(self, info: ValidationInfo) -> ModelSpec:
        limits = limits_of(info)
        if math.prod(self.input_shape) != self.input_dim:
            fail(
                ("input_shape",),
                "input_shape",
                f"input shape {_shape_text(self.input_shape)} holds "
                f"{math.prod(self.input_shape)} values, but input_dim is {self.input_dim}",
            )
        if len(self.layers) > limits.max_layers:
            fail(
                ("layers",),
                "too_many",
                f"at most {limits.max_layers} layers (got {len(self.layers)})",
            )
        if not any(isinstance(layer, Dense) for layer in self.layers):
            fail(("layers",), "no_dense", "the model needs at least one dense layer (its outputs)")
        self._check_before_flatten()
        self._fill_normalization()
        if self.parameter_count() > limits.max_parameters:
            fail(
                ("layers",),
                "too_large",
                f"the model has {self.parameter_count():,} parameters; the limit is "
                f"{limits.max_parameters:,} (FITQ_MAX_PARAMETERS)",
            )
        return self

    def _check_before_flatten(self) -> None:
        if len(self.input_shape) == 1:
            return
        for i, layer in enumerate(self.layers):
            kind: str = layer.type
            if kind == "flatten":
                return
            elementwise = kind in ELEMENTWISE or (
                isinstance(layer, ActivationLayer) and layer.activation != "softmax"
            )
            if not elementwise:
                fail(
                    ("layers", i, "type"),
                    "input_shape",
                    f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} layer on the "
                    f"{len(self.input_shape)}-dimensional input "
                    f"{_shape_text(self.input_shape)}: Keras would apply it to the last axis "
                    "only, and fitq's rows are flat; put a flatten before it (only layers "
                    "that act on each value alone may come first)",
                    kind,
                )

    def _fill_normalization(self) -> None:
        """Each normalization's single mean/variance as one per feature (Keras broadcasts)."""
        for i, (layer, width) in enumerate(zip(self.layers, self.widths(), strict=True)):
            if not isinstance(layer, Normalization):
                continue
            if len(layer.mean) == 1:
                layer.mean, layer.variance = layer.mean * width, layer.variance * width
            elif len(layer.mean) != width:
                fail(
                    ("layers", i, "mean"),
                    "length",
                    f"needs one value per feature ({width}) or a single value, got "
                    f"{len(layer.mean)}",
                )

    def widths(self) -> list[int]:
        """Each layer's input width, in order."""
        out, width = [], self.input_dim
        for layer in self.layers:
            out.append(width)
            if isinstance(layer, Dense):
                width = layer.units
        return out

    @property
    def output_index(self) -> int:
        """Index of the last dense layer: it decides the number of outputs."""
        return max(i for i, layer in enumerate(self.layers) if isinstance(layer, Dense))

    @property
    def output_units(self) -> int:
        layer = self.layers[self.output_index]
        assert isinstance(layer, Dense)
        return layer.units

    def output_activation(self) -> tuple[int, str]:
        """(index of the layer that sets it, the activation applied to the outputs)."""
        index = self.output_index
        layer = self.layers[index]
        assert isinstance(layer, Dense)
        activation: str = layer.activation
        for i, later in enumerate(self.layers[index + 1 :], start=index + 1):
            if isinstance(later, ActivationLayer) and later.activation != "linear":
                index, activation = i, later.activation
        return index, activation

    def parameter_count(self) -> int:
        """Weights, biases, normalization scales/offsets and PReLU slopes (moving statistics
        excluded)."""
        count = 0
        for layer, width in zip(self.layers, self.widths(), strict=True):
            if isinstance(layer, Dense):
                count += width * layer.units + (layer.units if layer.use_bias else 0)
            elif isinstance(layer, BatchNormalization | LayerNormalization):
                count += width * (int(layer.center) + int(layer.scale))
            elif isinstance(layer, PReLU):
                count += width
        return count
