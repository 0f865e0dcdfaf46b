"""The model: a stack of layers on ``input_dim`` features, checked against the limits."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, model_validator

from fitq.service.spec.base import Strict, fail, limits_of
from fitq.service.spec.layers import (
    ActivationLayer,
    BatchNormalization,
    Dense,
    Layer,
    LayerNormalization,
)


class ModelSpec(Strict):
    """A stack of layers on ``input_dim`` features; ``layers[i]`` is ``layers.{i}``."""

    input_dim: int = Field(ge=1)
    layers: list[Layer] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self, info: ValidationInfo) -> ModelSpec:
        limits = limits_of(info)
        if len(self.layers) > limits.max_layers:
            fail(
                ("layers",),
                "too_many",
                f"at most {limits.max_layers} layers (got {len(self.layers)})",
            )
        if not any(isinstance(layer, Dense) for layer in self.layers):
            fail(("layers",), "no_dense", "the model needs at least one dense layer (its outputs)")
        if self.parameter_count() > limits.max_parameters:
            fail(
                ("layers",),
                "too_large",
                f"the model has {self.parameter_count():,} parameters; the limit is "
                f"{limits.max_parameters:,} (FITQ_MAX_PARAMETERS)",
            )
        return self

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
        """Weights, biases and normalization scales/offsets (moving statistics excluded)."""
        width, count = self.input_dim, 0
        for layer in self.layers:
            if isinstance(layer, Dense):
                count += width * layer.units + (layer.units if layer.use_bias else 0)
                width = layer.units
            elif isinstance(layer, BatchNormalization | LayerNormalization):
                count += width * (int(layer.center) + int(layer.scale))
        return count
