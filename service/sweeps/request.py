"""The body of ``POST /v1/sweeps``, validated (pydantic): the shape only.

Whether each trial is a trainable job is checked by ``expand.trial_specs``, which
runs every combination through the job spec's own validation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import Tag as Member

from fitq.service import spec as specs
from fitq.service.errors import InvalidInput
from fitq.service.spec.job import MAX_TAGS, Tag, unique_tags

MAX_TRIALS = 1000
"""Trials per sweep; a grid larger than this is refused rather than truncated."""

_PATH = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Values(_Strict):
    """A parameter that takes each of ``values`` (grid) or one of them per draw (random)."""

    values: list[Any] = Field(min_length=1, max_length=MAX_TRIALS)


class Distribution(_Strict):
    """A parameter drawn per trial (random sweeps only). ``log_uniform`` draws
    ``exp(uniform(log min, log max))``, so ``min`` must be > 0; ``int_uniform``
    draws an integer in ``[min, max]``, both ends included."""

    distribution: Literal["uniform", "log_uniform", "int_uniform"]
    min: float
    max: float

    @model_validator(mode="after")
    def _range(self) -> Distribution:
        if not self.min < self.max:
            raise ValueError(f"min must be < max (got {self.min} and {self.max})")
        if self.distribution == "log_uniform" and self.min <= 0:
            raise ValueError(f"log_uniform needs min > 0 (got {self.min})")
        if self.distribution == "int_uniform" and not (
            float(self.min).is_integer() and float(self.max).is_integer()
        ):
            raise ValueError("int_uniform needs integer min and max")
        return self


def _kind(parameter: Any) -> str:
    """Which kind a parameter is, by its key (a body) or its class (a model):
    a refusal then names what is wrong with that kind (``min must be < max``),
    not every field of the other one."""
    drawn = isinstance(parameter, Distribution) or (  # a model when serializing
        isinstance(parameter, dict) and "distribution" in parameter
    )
    return "distribution" if drawn else "values"


Parameter = Annotated[
    Annotated[Values, Member("values")] | Annotated[Distribution, Member("distribution")],
    Discriminator(_kind),
]


class Metric(_Strict):
    """What ranks the trials: a History name (``val_loss``, ``accuracy``, …)."""

    name: str = Field(min_length=1, max_length=100)
    goal: Literal["minimize", "maximize"] = "minimize"


class Asha(_Strict):
    """Asynchronous successive halving: at epochs ``min_epochs · reduction_factorᵏ``
    (the rungs) a trial goes on only if its value is within the best
    ``1 / reduction_factor`` of the values recorded at that rung so far."""

    type: Literal["asha"] = "asha"
    min_epochs: int = Field(default=1, ge=1)
    reduction_factor: int = Field(default=3, ge=2)


class SweepCreate(_Strict):
    name: str | None = Field(default=None, max_length=200)
    spec: dict[str, Any]
    method: Literal["grid", "random"] = "grid"
    parameters: dict[_PATH, Parameter] = Field(min_length=1, max_length=50)
    max_trials: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    metric: Metric = Field(default_factory=lambda: Metric(name="val_loss"))
    early_terminate: Asha | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    """The sweep's tags; every trial gets them, after its spec's own."""

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, value: list[str]) -> list[str]:
        return unique_tags(value)

    @model_validator(mode="after")
    def _method_fits(self) -> SweepCreate:
        if self.method == "grid":
            drawn = [p for p, v in self.parameters.items() if isinstance(v, Distribution)]
            if drawn:
                raise ValueError(
                    f"a grid sweep takes only {{'values': [...]}} parameters; "
                    f"{drawn[0]} is a distribution (use method 'random')"
                )
        elif self.max_trials is None:
            raise ValueError("a random sweep needs max_trials")
        return self


def parse(body: Any) -> SweepCreate:
    """A request body (parsed JSON) → ``SweepCreate``, or one 422 naming the
    field, worded as a job spec's refusals are."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object (a sweep)", loc=["body"])
    try:
        return SweepCreate.model_validate(body)
    except ValidationError as exc:
        errors = [_untagged(e) for e in exc.errors()]
        messages = [specs.format_error(e).replace("Value error, ", "") for e in errors]
        message = "; ".join(messages[:4])
        if len(errors) > 4:
            message += f" (and {len(errors) - 4} more)"
        raise InvalidInput(message, loc=["body", *errors[0]["loc"]]) from None


def _untagged(error: Any) -> Any:
    """``error`` without the member's tag pydantic puts in a parameter's location
    (``parameters.x.distribution.min`` → ``parameters.x.min``)."""
    loc = error["loc"]
    if len(loc) >= 3 and loc[0] == "parameters" and loc[2] in ("values", "distribution"):
        return {**error, "loc": (*loc[:2], *loc[3:])}
    return error
