"""A sweep's trials: the parameter combinations, and the job spec of each.

Parameters are dotted paths into the job spec: ``model.layers.0.units`` (list
indices are numbers), ``compile.optimizer.learning_rate``. A string where the
path needs an object is read as ``{"name": string}``, so ``"optimizer": "adam"``
takes ``compile.optimizer.beta_1`` as Keras users expect.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fitq.service.errors import InvalidInput, InvalidSpec, NotFound
from fitq.service.sweeps.request import MAX_TRIALS, Distribution, SweepCreate, Values


@dataclass(frozen=True)
class Trial:
    """One variant: its parameter values (by path), its full job spec, and what
    the validation made of that spec (the service's: the normalized spec)."""

    params: dict[str, Any]
    spec: dict[str, Any]
    validated: Any = None


def combinations(request: SweepCreate) -> list[dict[str, Any]]:
    """Every grid combination (in the order the parameters were given), or
    ``max_trials`` random draws from a generator seeded with ``request.seed``."""
    paths = list(request.parameters)
    if request.method == "grid":
        choices = [_values(request.parameters[p]) for p in paths]
        total = math.prod(len(c) for c in choices)
        if total > MAX_TRIALS:
            raise InvalidSpec(
                f"the grid has {total} combinations; at most {MAX_TRIALS} are allowed",
                loc=["body", "parameters"],
            )
        return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*choices)]
    rng = random.Random(request.seed)
    trials = request.max_trials or 0
    return [{p: _draw(request.parameters[p], rng) for p in paths} for _ in range(trials)]


def _values(parameter: Values | Distribution) -> list[Any]:
    assert isinstance(parameter, Values)  # SweepCreate refuses distributions in a grid
    return parameter.values


def _draw(parameter: Values | Distribution, rng: random.Random) -> Any:
    if isinstance(parameter, Values):
        return rng.choice(parameter.values)
    if parameter.distribution == "uniform":
        return rng.uniform(parameter.min, parameter.max)
    if parameter.distribution == "log_uniform":
        return math.exp(rng.uniform(math.log(parameter.min), math.log(parameter.max)))
    return rng.randint(int(parameter.min), int(parameter.max))


def apply(spec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with each dotted path set to its value."""
    result = copy.deepcopy(spec)
    for path, value in params.items():
        _set(result, path, value)
    return result


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = spec
    for depth, part in enumerate(parts[:-1]):
        child = _child(node, part, path)
        if child is None or isinstance(child, str):
            # a missing object is created; a bare name becomes {"name": …}
            child = {} if child is None else {"name": child}
            _put(node, part, child, path)
        elif not isinstance(child, dict | list):
            where = ".".join(parts[: depth + 1])
            raise InvalidSpec(
                f"parameter {path}: {where} is {child!r}, not an object or a list",
                loc=["body", "parameters", path],
            )
        node = child
    _put(node, parts[-1], value, path)


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    return node.get(part)


def _put(node: Any, part: str, value: Any, path: str) -> None:
    if isinstance(node, list):
        node[_index(node, part, path)] = value
    else:
        node[part] = value


def _index(node: list[Any], part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise InvalidSpec(
            f"parameter {path}: {part!r} is not an index of a list of {len(node)}",
            loc=["body", "parameters", path],
        )
    return int(part)


def trial_specs(request: SweepCreate, validate: Callable[[dict[str, Any]], Any]) -> list[Trial]:
    """Every trial's job spec, each checked by ``validate`` (the job submission's
    own validation, whose result the trial keeps); the first that fails is
    refused naming its parameter values, with the status a job would get (422,
    or 404 for a dataset id that is not the caller's), so a sweep is created
    whole or not at all."""
    trials = []
    for params in combinations(request):
        spec = apply(request.spec, params)
        try:
            validated = validate(spec)
        except (InvalidInput, NotFound) as exc:
            values = ", ".join(f"{p}={v!r}" for p, v in params.items())
            where = exc.loc[1:] if exc.loc and exc.loc[0] == "body" else (exc.loc or [])
            refusal = InvalidSpec if isinstance(exc, InvalidInput) else NotFound
            raise refusal(
                f"the trial with {values} is not valid: {exc.message}",
                loc=["body", "spec", *where],
            ) from None
        trials.append(Trial(params=params, spec=spec, validated=validated))
    return trials
