"""Specs the API accepts, part by part: each value at its bounds, and hypothesis strategies.

Everything is read from the spec's own models (their fields, types and bounds), so a new
field or a changed bound is covered without editing this file. A part is embedded in a
tiny job (3 features, a hidden layer of 4 units, an output layer that fits the loss).
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from hypothesis import strategies as st
from pydantic import BaseModel

from fitq.service.spec import ACTIVATIONS, EarlyStopping, FitSpec
from fitq.service.spec.base import FLOAT32_MAX
from fitq.service.spec.callbacks import ReduceLROnPlateau
from fitq.service.spec.constraints import CONSTRAINT_CLASSES
from fitq.service.spec.initializers import INITIALIZER_CLASSES
from fitq.service.spec.layers import LAYER_CLASSES, Regularizer
from fitq.service.spec.losses import (
    BINARY_LOSSES,
    CATEGORICAL_LOSSES,
    HINGE_LOSSES,
    LOSS_CLASSES,
    REGRESSION_LOSSES,
)
from fitq.service.spec.metrics import MetricName
from fitq.service.spec.model import ModelSpec
from fitq.service.spec.optimizers import OPTIMIZER_CLASSES
from fitq.service.spec.schedules import SCHEDULE_CLASSES

INPUT_DIM, HIDDEN, CLASSES = 3, 4, 3
SMALL = 4  # the largest size (units, epochs, batch) drawn: the step must stay tiny

Body = dict[str, Any]

# ---------------------------------------------------------------- one field


def _number_member(annotation: Any) -> Any:
    """The number in a union of a number and objects (a learning rate or a schedule)."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return None
    for arg in get_args(annotation):
        if get_origin(arg) is Annotated and get_args(arg)[0] in (int, float):
            return arg
    return None


def _constraints(model: type[BaseModel], name: str) -> list[Any]:
    """The field's numeric constraints (Ge, Lt, …), also those of a union's number."""
    field = model.model_fields[name]
    found = list(field.metadata)
    member = _number_member(field.annotation)
    if member is not None:
        for info in get_args(member)[1:]:
            found += list(getattr(info, "metadata", []))
    return found


def bounds(model: type[BaseModel], name: str) -> tuple[float | None, bool, float | None, bool]:
    """(low, low is open, high, high is open) of a numeric field; None where unbounded."""
    low: float | None = None
    high: float | None = None
    low_open = high_open = False
    for m in _constraints(model, name):
        if isinstance(m, Ge):
            low, low_open = float(m.ge), False  # type: ignore[arg-type]
        elif isinstance(m, Gt):
            low, low_open = float(m.gt), True  # type: ignore[arg-type]
        elif isinstance(m, Le):
            high, high_open = float(m.le), False  # type: ignore[arg-type]
        elif isinstance(m, Lt):
            high, high_open = float(m.lt), True  # type: ignore[arg-type]
    return low, low_open, high, high_open


def _kind(model: type[BaseModel], name: str) -> tuple[Any, bool]:
    """(the field's base type or Literal, whether null is allowed)."""
    annotation = model.model_fields[name].annotation
    member = _number_member(annotation)
    if member is not None:  # a number or an object: the number's cases here
        return get_args(member)[0], type(None) in get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), type(None) in get_args(annotation)
    return annotation, False


def extremes(model: type[BaseModel], name: str) -> list[Any]:
    """The field's allowed extremes: its bounds (the nearest float inside an open one;
    the largest finite JSON number where unbounded), booleans both ways, every literal."""
    kind, nullable = _kind(model, name)
    values: list[Any] = [None] if nullable else []
    if kind is bool:
        return values + [False, True]
    if get_origin(kind) is Literal:
        return values + list(get_args(kind))
    low, low_open, high, high_open = bounds(model, name)
    if kind is int:
        return values + [int(low) if low is not None else -(2**63)]
    if kind is float:
        lo = -sys.float_info.max if low is None else low
        hi = sys.float_info.max if high is None else high
        lo = math.nextafter(lo, math.inf) if low_open else lo
        hi = math.nextafter(hi, -math.inf) if high_open else hi
        return values + [lo, hi]
    raise TypeError(f"{model.__name__}.{name}: no extremes for {kind}")


def values(model: type[BaseModel], name: str) -> st.SearchStrategy[Any]:
    """Any valid value of the field (sizes kept small)."""
    kind, nullable = _kind(model, name)
    low, low_open, high, high_open = bounds(model, name)
    if kind is bool:
        strategy: st.SearchStrategy[Any] = st.booleans()
    elif get_origin(kind) is Literal:
        strategy = st.sampled_from(get_args(kind))
    elif kind is int:
        lo = int(low) if low is not None else 0
        strategy = st.integers(lo, min(int(high) if high is not None else SMALL, lo + SMALL))
    elif kind is float:
        strategy = st.floats(
            low, high, exclude_min=low_open, exclude_max=high_open, allow_nan=False,
            allow_infinity=False,
        )  # fmt: skip
    else:
        raise TypeError(f"{model.__name__}.{name}: no strategy for {kind}")
    return st.none() | strategy if nullable else strategy


def scalar_fields(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    """The fields a value can stand in for (not the dispatch key, not a nested part)."""
    out = []
    for name in model.model_fields:
        if name in ("name", "type", *skip):
            continue
        kind, _ = _kind(model, name)
        if kind in (bool, int, float) or get_origin(kind) is Literal:
            out.append(name)
    return out


def cases(
    model: type[BaseModel], base: Body | None = None, skip: tuple[str, ...] = ()
) -> list[Body]:
    """One parameter dict per (field, extreme): that field at the value, the others at
    ``base`` (or their defaults)."""
    return [
        {**(base or {}), name: value}
        for name in scalar_fields(model, skip)
        for value in extremes(model, name)
    ]


def params(
    model: type[BaseModel], skip: tuple[str, ...] = (), **fixed: st.SearchStrategy[Any]
) -> st.SearchStrategy[Body]:
    """The model's required fields and any subset of the others, at valid values (an
    absent one takes its default); ``fixed`` gives the strategy of a nested field."""
    strategies = {n: values(model, n) for n in scalar_fields(model, skip)} | fixed
    required = {n: s for n, s in strategies.items() if model.model_fields[n].is_required()}
    optional = {n: s for n, s in strategies.items() if n not in required}
    return st.fixed_dictionaries(required, optional=optional)


# ---------------------------------------------------------------- a job around a part


def output_layer(loss: str) -> Body:
    if loss in ("sparse_categorical_crossentropy", *CATEGORICAL_LOSSES):
        return {"type": "dense", "units": CLASSES, "activation": "softmax"}
    if loss in BINARY_LOSSES:
        return {"type": "dense", "units": 1, "activation": "sigmoid"}
    return {"type": "dense", "units": 1}


_SPARSE_METRICS = ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"]
_OUTPUT_METRICS = [
    m for m in get_args(MetricName) if m not in ("accuracy", *_SPARSE_METRICS)
]  # compared with targets of the outputs' shape


def metrics_for(loss: str) -> list[str]:
    """Every metric the spec allows with ``loss``."""
    if loss == "sparse_categorical_crossentropy":
        return ["accuracy", *_SPARSE_METRICS]
    if loss in (*CATEGORICAL_LOSSES, *BINARY_LOSSES, *HINGE_LOSSES):
        return ["accuracy", *_OUTPUT_METRICS]
    assert loss in REGRESSION_LOSSES, loss
    return _OUTPUT_METRICS


def job(
    hidden: list[Body] | None = None,
    *,
    optimizer: Any = "adam",
    loss: Any = "sparse_categorical_crossentropy",
    metrics: list[str] | None = None,
    fit: Body | None = None,
    **top: Any,
) -> Body:
    """A job body as a client sends it: ``hidden`` layers, then the output for ``loss``."""
    loss_name = loss if isinstance(loss, str) else loss["name"]
    if hidden is None:
        hidden = [{"type": "dense", "units": HIDDEN, "activation": "relu"}]
    return {
        "model": {"input_dim": INPUT_DIM, "layers": [*hidden, output_layer(loss_name)]},
        "compile": {
            "optimizer": optimizer,
            "loss": loss,
            "metrics": metrics_for(loss_name) if metrics is None else metrics,
        },
        "fit": {"epochs": 1, "batch_size": 4, **(fit or {})},
        "dataset_id": "tiny",
        **top,
    }


def dense(**params: Any) -> Body:
    return {"type": "dense", "units": HIDDEN, **params}


# ---------------------------------------------------------------- every part, at its bounds

# Values for the other fields while one is at an extreme, where a default would make a
# rule across fields refuse the case (nesterov needs momentum > 0).
_OPTIMIZER_BASE: dict[str, Body] = {"sgd": {"momentum": 0.5}}


def _uniform_pairs() -> list[Body]:
    model = INITIALIZER_CLASSES["random_uniform"]
    lo, hi = extremes(model, "minval")[0], extremes(model, "maxval")[-1]
    # each bound with a partner that keeps minval ≤ maxval and the range finite in float32
    return [{"minval": a, "maxval": b} for a, b in [(lo, 0.0), (0.0, hi), (lo, lo), (hi, hi)]]


# The keys a schedule requires (Keras has no default for them), for its cases.
_SCHEDULE_BASE: dict[str, Body] = {
    "piecewise_constant_decay": {"boundaries": [1.0, 3.0], "values": [0.1, 0.05, 0.01]},
    **{
        name: {"initial_learning_rate": 0.1, "decay_steps": 2.0, "decay_rate": 0.5}
        for name in ("exponential_decay", "inverse_time_decay")
    },
    "polynomial_decay": {"initial_learning_rate": 0.1, "decay_steps": 2.0},
    "cosine_decay": {"initial_learning_rate": 0.1, "decay_steps": 2.0},
    "cosine_decay_restarts": {"initial_learning_rate": 0.1, "first_decay_steps": 2.0},
}


def schedule_cases() -> list[tuple[str, Body]]:
    """Every schedule with each of its values at its bounds (under sgd), every schedule
    under every optimizer that takes it (ftrl: those that never reach 0), the callbacks."""
    out: list[tuple[str, Body]] = []
    for name, model in SCHEDULE_CLASSES.items():
        base = {"schedule": name, **_SCHEDULE_BASE[name]}
        for p in cases(model, base):
            out.append((f"schedule {p}", job(optimizer={"name": "sgd", "learning_rate": p})))
        for optimizer in OPTIMIZER_CLASSES:
            rate = {**base, "alpha": 0.1} if "cosine" in name else base
            if optimizer == "ftrl" and name == "polynomial_decay":
                rate = {**rate, "end_learning_rate": 0.01}
            out.append(
                (f"schedule {name} {optimizer}", job(optimizer={"name": optimizer,
                                                                "learning_rate": rate}))
            )  # fmt: skip
    for p in cases(ReduceLROnPlateau, skip=("monitor",)):
        for monitor in ("loss", "val_accuracy"):
            fit = {"validation_split": 0.25, "reduce_lr_on_plateau": {**p, "monitor": monitor}}
            for optimizer in ("sgd", "ftrl", "nadam"):
                out.append((f"reduce_lr {monitor} {p} {optimizer}", job(optimizer=optimizer,
                                                                        fit=fit)))  # fmt: skip
    every = [{"type": "early_stopping"}, {"type": "reduce_lr_on_plateau"},
             {"class_name": "TerminateOnNaN", "config": {"raise_error": True}}]  # fmt: skip
    out.append(("callbacks", job(fit={"validation_split": 0.25, "callbacks": every})))
    return out


# What a layer type needs besides its defaults (Keras has no default for these).
_LAYER_REQUIRED: dict[str, Body] = {
    "dense": {"units": HIDDEN},
    "dropout": {"rate": 0.5},
    "activation": {"activation": "tanh"},
    "rescaling": {"scale": 0.5},
    "normalization": {"mean": [0.5] * HIDDEN, "variance": [2.0] * HIDDEN},
    "gaussian_noise": {"stddev": 0.1},
    "gaussian_dropout": {"rate": 0.5},
    "alpha_dropout": {"rate": 0.5},
}


def layer_part_cases() -> list[tuple[str, Body]]:
    """What `cases` cannot draw from a layer's scalar fields: constraints, normalization's
    lists at their bounds, prelu's initializer, a multi-dimensional input."""
    out: list[tuple[str, Body]] = []
    for name, model in CONSTRAINT_CLASSES.items():
        base = {"min_value": 0.0} if name == "min_max_norm" else {}
        for p in cases(model, base) or [{}]:
            if name == "min_max_norm" and p.get("min_value", 0.0) > p.get("max_value", 1.0):
                p = {**p, "max_value": p["min_value"]}  # a rule across fields: min ≤ max
            kernel = {"name": name, **p}
            bias = {**kernel, "axis": 0} if "axis" in model.model_fields else kernel
            layer = dense(kernel_constraint=kernel, bias_constraint=bias)
            out.append((f"constraint {name} {p}", job([layer])))
    out.append(("constraint by name", job([dense(kernel_constraint="NonNeg")])))
    f32 = FLOAT32_MAX
    for mean, variance in [(-f32, 0.0), (f32, f32), (0.0, 0.0)]:
        layer = {"type": "normalization", "mean": [mean] * HIDDEN, "variance": [variance] * HIDDEN}
        for invert in (False, True):
            body = job([dense(), {**layer, "invert": invert}])
            out.append((f"layer normalization {mean} {variance} {invert}", body))
    scalar = {"type": "normalization", "mean": 1.0, "variance": 4.0}  # every feature's
    out.append(("layer normalization of one value", job([dense(), scalar])))
    for init in ("glorot_uniform", {"name": "constant", "value": -1.0}):
        out.append(
            (f"layer prelu {init}", job([dense(), {"type": "prelu", "alpha_initializer": init}]))
        )
    elementwise = [
        {"type": t, **_LAYER_REQUIRED.get(t, {})}
        for t in ("rescaling", "gaussian_noise", "relu", "leaky_relu", "elu", "dropout",
                  "gaussian_dropout", "alpha_dropout", "activity_regularization")
    ] + [{"type": "activation", "activation": "gelu"}]  # fmt: skip
    body = job([*elementwise, {"type": "flatten"}, dense()])
    body["model"] = {"input_shape": [1, INPUT_DIM], "layers": body["model"]["layers"]}
    out.append(("model input_shape before a flatten", body))
    return out


def bound_cases() -> list[tuple[str, Body]]:
    """(an id, a job body) for every part the spec accepts, each value at its bounds."""
    out: list[tuple[str, Body]] = []
    for name, model in OPTIMIZER_CLASSES.items():
        base = _OPTIMIZER_BASE.get(name, {})
        for p in cases(model, base):
            out.append((f"optimizer {name} {p}", job(optimizer={"name": name, **p})))
    for alias in ("momentum", "gd"):
        out.append((f"optimizer {alias}", job(optimizer=alias, fit={"batch_size": None})))
    out += schedule_cases()
    for name, model in INITIALIZER_CLASSES.items():
        skip = ("minval", "maxval") if name == "random_uniform" else ()
        found = cases(model, skip=skip) or [{}]
        found += _uniform_pairs() if name == "random_uniform" else []
        for p in found:
            init = {"name": name, **p}
            layer = dense(kernel_initializer=init, bias_initializer=init)
            out.append((f"initializer {name} {p}", job([layer])))
    for p in [*cases(Regularizer), "l1", "l2"]:
        out.append((f"regularizer {p}", job([dense(kernel_regularizer=p)])))
    for name in [*ACTIVATIONS, "swish"]:
        out.append((f"activation {name}", job([dense(activation=name)])))
        layers = [dense(), {"type": "activation", "activation": name}]
        out.append((f"activation layer {name}", job(layers)))
    for name, model in LAYER_CLASSES.items():
        required = _LAYER_REQUIRED.get(name, {})
        for p in cases(model, required, skip=("activation",)) or [required]:
            layers = [dense(), {"type": name, **p}] if name != "dense" else [{"type": name, **p}]
            out.append((f"layer {name} {p}", job(layers)))
    out += layer_part_cases()
    for p in cases(ModelSpec):
        body = job()
        body["model"].update(p)
        out.append((f"model {p}", body))
    for name, model in LOSS_CLASSES.items():
        for p in cases(model) or [{}]:  # with every metric the loss allows
            body = job(loss={"name": name, **p}, metrics=metrics_for(name))
            out.append((f"loss {name} {p}", body))
    for p in cases(FitSpec, skip=("early_stopping",)):
        out.append((f"fit {p}", job(fit=p)))
    for p in cases(EarlyStopping, skip=("monitor",)):
        for monitor in ("loss", "val_loss", "accuracy", "val_accuracy"):
            fit = {"validation_split": 0.25, "early_stopping": {**p, "monitor": monitor}}
            out.append((f"early_stopping {monitor} {p}", job(fit=fit)))
    for seed in (0, 2**63 - 1):
        out.append((f"seed {seed}", job(seed=seed)))
    return out


# ---------------------------------------------------------------- strategies


def _initializers() -> st.SearchStrategy[Body]:
    def one(name: str) -> st.SearchStrategy[Body]:
        model = INITIALIZER_CLASSES[name]
        return params(model).map(lambda p: {"name": name, **p})

    return st.one_of([one(name) for name in INITIALIZER_CLASSES])


def _dense() -> st.SearchStrategy[Body]:
    return params(
        LAYER_CLASSES["dense"],
        units=st.integers(1, SMALL),
        activation=st.sampled_from(ACTIVATIONS),
        kernel_initializer=_initializers(),
        bias_initializer=_initializers(),
        kernel_regularizer=st.none() | params(Regularizer),
        kernel_constraint=st.none() | _weight_constraints(),
        bias_constraint=st.none() | _weight_constraints(),
    ).map(lambda p: {"type": "dense", **p})


def _weight_constraints() -> st.SearchStrategy[Body]:
    def one(name: str) -> st.SearchStrategy[Body]:
        model = CONSTRAINT_CLASSES[name]
        fixed = {"axis": st.just(0)} if "axis" in model.model_fields else {}  # a bias's too
        if name == "min_max_norm":  # min ≤ max
            fixed |= {"min_value": st.floats(0, 1), "max_value": st.floats(1, 10)}
        return params(model, **fixed).map(lambda p: {"name": name, **p})

    return st.one_of([one(name) for name in CONSTRAINT_CLASSES])


# the strategies of a layer type's fields that are not numbers (one value: every feature's)
_LAYER_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "activation": {"activation": st.sampled_from(ACTIVATIONS)},
    "normalization": {
        "mean": st.lists(st.floats(-10, 10), min_size=1, max_size=1),
        "variance": st.lists(st.floats(0, 10), min_size=1, max_size=1),
    },
}


def _layer() -> st.SearchStrategy[Body]:
    def one(name: str) -> st.SearchStrategy[Body]:
        fixed = dict(_LAYER_FIELDS.get(name, {}))
        if name == "prelu":
            fixed["alpha_initializer"] = _initializers()
        return params(LAYER_CLASSES[name], **fixed).map(lambda p: {"type": name, **p})

    others = [one(name) for name in LAYER_CLASSES if name != "dense"]
    return st.one_of([_dense(), *others])


def _schedule() -> st.SearchStrategy[Body]:
    def one(name: str) -> st.SearchStrategy[Body]:
        fixed: dict[str, st.SearchStrategy[Any]] = {}
        if name == "piecewise_constant_decay":
            fixed = {
                "boundaries": st.just([1.0, 2.0]),
                "values": st.lists(st.floats(0, 10), min_size=3, max_size=3),
            }
        model = SCHEDULE_CLASSES[name]
        return params(model, **fixed).map(lambda p: {"schedule": name, **p})

    return st.one_of([one(name) for name in SCHEDULE_CLASSES])


def _optimizer() -> st.SearchStrategy[Body]:
    def one(name: str) -> st.SearchStrategy[Body]:
        model = OPTIMIZER_CLASSES[name]
        rate = values(model, "learning_rate") | _schedule()
        return params(model, learning_rate=rate).map(lambda p: {"name": name, **p})

    return st.one_of([one(name) for name in OPTIMIZER_CLASSES])


def _loss() -> st.SearchStrategy[Body]:
    def one(name: str) -> st.SearchStrategy[Body]:
        return params(LOSS_CLASSES[name]).map(lambda p: {"name": name, **p})

    return st.one_of([one(name) for name in LOSS_CLASSES])


def _fit() -> st.SearchStrategy[Body]:
    monitor = st.sampled_from(["loss", "val_loss"])
    early = params(EarlyStopping, monitor=monitor)
    plateau = params(ReduceLROnPlateau, monitor=monitor)
    return params(
        FitSpec,
        epochs=st.integers(1, 2),
        batch_size=st.none() | st.integers(1, 2 * SMALL),
        early_stopping=st.none() | early,
        reduce_lr_on_plateau=st.none() | plateau,
    )


@st.composite
def jobs(draw: Callable[..., Any]) -> Body:
    """A whole job whose every part is drawn: layers, optimizer, loss, metrics, fit, seed."""
    loss = draw(_loss())
    allowed = metrics_for(loss["name"])
    return job(
        draw(st.lists(_layer(), min_size=0, max_size=3)) + [draw(_dense())],
        optimizer=draw(_optimizer()),
        loss=loss,
        metrics=draw(st.lists(st.sampled_from(allowed), unique=True)),
        fit=draw(_fit()),
        seed=draw(st.integers(0, 2**63 - 1)),
    )
