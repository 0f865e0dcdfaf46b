"""How the engine reads the normalized spec (docs/spec-contract.md): as it is.

The service fills every default and resolves every alias before a spec is stored, so
the engine keeps no defaults and no aliases of its own. Each part of the spec it reads
is a frozen dataclass whose fields are exactly that part's keys: `read` refuses a
missing key and a key it does not know with a ConfigError (never a silent fallback,
never a dropped key).

What the engine still checks is what its arithmetic needs, declared on the field's type
(`Annotated[float, real(gt=0)]`, `Annotated[int, count(ge=1)]`) and checked by
`check_bounds` when a config is made.
Every real number becomes a float32 scalar in a torch op, so a `real` field is also
finite and at most FLOAT32_MAX in magnitude. The service enforces the same bounds at
submit (tests/contract/test_bounds.py proves they agree), so a ConfigError from a
stored spec means the two have drifted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar, get_type_hints

from fitq.worker.engine.errors import ConfigError

FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32

T = TypeVar("T")


@dataclass(frozen=True)
class Bounds:
    """A field's allowed range; `real` adds: finite, within ±FLOAT32_MAX."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    real: bool = True

    @property
    def low(self) -> tuple[float, bool]:
        """(the lower bound, whether it is open): ±FLOAT32_MAX stands in for none."""
        if self.gt is not None:
            return self.gt, True
        return (self.ge, False) if self.ge is not None else (-FLOAT32_MAX, False)

    @property
    def high(self) -> tuple[float, bool]:
        if self.lt is not None:
            return self.lt, True
        return (self.le, False) if self.le is not None else (FLOAT32_MAX, False)

    def allows(self, value: float) -> bool:
        (low, low_open), (high, high_open) = self.low, self.high
        if not self.real:
            return value >= low if self.ge is not None or self.gt is not None else True
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return math.isfinite(value) and above and below

    def text(self) -> str:
        (low, low_open), (high, high_open) = self.low, self.high
        if not self.real:
            return f">= {low:g}"
        return f"{'>' if low_open else '>='} {low:g} and {'<' if high_open else '<='} {high:g}"


def real(
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Bounds:
    """The bounds of a real-number field: finite, within float32, and these."""
    return Bounds(gt=gt, ge=ge, lt=lt, le=le)


def count(*, ge: int) -> Bounds:
    """The bounds of a whole-number field (units, batch size): at least `ge`."""
    return Bounds(ge=ge, real=False)


_BOUNDS: dict[type, dict[str, Bounds]] = {}


def bounds_of(cls: type) -> dict[str, Bounds]:
    """A config class's bounded fields: name → the Bounds in its `Annotated` type."""
    if cls not in _BOUNDS:
        hints = get_type_hints(cls, include_extras=True)
        found = {}
        for f in fields(cls):
            for extra in getattr(hints.get(f.name), "__metadata__", ()):
                if isinstance(extra, Bounds):
                    found[f.name] = extra
        _BOUNDS[cls] = found
    return _BOUNDS[cls]


def check_bounds(config: Any) -> None:
    """Every bounded field of a config dataclass within its bounds (null and objects pass)."""
    for name, bounds in bounds_of(type(config)).items():
        value = getattr(config, name)
        if value is None or isinstance(value, Checked):  # an object (a learning-rate
            continue  # schedule) is a config checked on its own
        if not isinstance(value, int | float) or not bounds.allows(value):
            raise ConfigError(f"{name} must be {bounds.text()}, got {value!r}")


class Checked:
    """A config dataclass that checks its bounds when made (then its own rules)."""

    def __post_init__(self) -> None:
        check_bounds(self)


def keys(spec: Any, expected: Iterable[str], where: str) -> Mapping[str, Any]:
    """`spec` as a mapping with exactly the `expected` keys, else a ConfigError."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be an object (the normalized spec), got {spec!r}")
    expected = list(expected)
    missing = [k for k in expected if k not in spec]
    unknown = [k for k in spec if k not in expected]
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(map(str, unknown))}"] if unknown else []
        )
        raise ConfigError(
            f"{where} is not a normalized spec ({'; '.join(parts)}); "
            f"expected exactly: {', '.join(expected)}"
        )
    return spec


def read(cls: type[T], spec: Any, where: str, *, tag: str | None = None) -> T:
    """The config `cls` from `spec`'s keys, which must be exactly its fields (plus `tag`,
    the key that chose `cls`, e.g. "name"); a bad value's error names `where`."""
    names = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
    spec = keys(spec, [*([tag] if tag else []), *names], where)
    try:
        return cls(**{k: spec[k] for k in names})
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
