"""Client text, checked once: strings both databases can hold, and JSON that
parses to the same values everywhere it goes.

Every string a request carries ends up stored or compared in SQL, and two
kinds of character break that on one database or both (a 500 before these
checks):

- NUL (U+0000): PostgreSQL's ``text`` and ``jsonb`` cannot hold it, and the
  driver refuses it in any parameter;
- a lone surrogate (U+D800–U+DFFF, e.g. JSON's ``"\\ud800"``): it is not
  Unicode text, and encoding it to UTF-8 for either database raises.

JSON has values of its own that Python reads but nothing downstream can
use: ``NaN`` and ``Infinity`` (not JSON at all, by RFC 8259), a number past
the float range (``1e999`` becomes ``inf``), and an integer past Python's
int-string limit (``int()`` raises ``ValueError``). :func:`loads` refuses them
all, each as an ``InvalidInput`` whose ``loc`` names the field.

A JSON string can only hold NUL or a surrogate through a ``\\u`` escape (a
raw control character or a surrogate's bytes fail the parse itself), so the
values are walked only when the text has one, or when the parse met a number
it refused; other bodies cost one scan of their bytes.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from typing import Any

from fitq.service.errors import InvalidInput

_SURROGATE = re.compile("[\ud800-\udfff]")

Loc = Sequence[str | int]


def problem(value: str) -> str | None:
    """What makes ``value`` unstorable (None: nothing)."""
    if "\x00" in value:
        return "holds a NUL character (\\u0000), which fitq does not store"
    if not value.isascii() and _SURROGATE.search(value):
        return "holds a lone surrogate (\\ud800–\\udfff), which is not Unicode text"
    return None


def check_text(value: str, loc: Loc, what: str | None = None) -> str:
    """``value`` itself, or an ``InvalidInput`` at ``loc`` when it cannot be stored."""
    found = problem(value)
    if found is not None:
        raise InvalidInput(f"{what or _where(loc)} {found}", loc=list(loc))
    return value


class _Refused:
    """A number the parse met and refused; found by the walk, which knows where it is."""

    def __init__(self, why: str):
        self.why = why


_HUGE = re.compile(rb"[eE]\+?0*[1-9][0-9]{2,}|[0-9]{300}")
"""Where a float may have overflowed to ``inf`` (an exponent of 3 digits, 300 digits in
a row): only then are the values walked for one."""


def loads(raw: bytes | bytearray, loc: Loc = ("body",)) -> Any:
    """``raw`` parsed as JSON, every string and number in it usable (see above).

    Malformed JSON is an ``InvalidInput`` at ``loc`` saying where it breaks. The
    parse keeps the C scanner's fast paths: ints and floats are read by the
    scanner itself, and only a body that breaks Python's int-string limit is
    parsed again with a hook that marks the culprit."""
    refused = False

    def constant(token: str) -> _Refused:
        nonlocal refused
        refused = True
        return _Refused(f"is {token}, which JSON does not allow; send a finite number")

    def integer(text: str) -> int | _Refused:
        try:
            return int(text)
        except ValueError:  # past sys.get_int_max_str_digits()
            return _Refused(
                f"is an integer of {len(text.lstrip('-'))} digits; at most "
                f"{sys.get_int_max_str_digits()} are read"
            )

    try:
        try:
            value = json.loads(raw, parse_constant=constant)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer past the limit: again, marking it
            refused = True
            value = json.loads(raw, parse_constant=constant, parse_int=integer)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            loc=list(loc),
        ) from None
    except (UnicodeDecodeError, RecursionError):
        raise InvalidInput("the body is not valid JSON text", loc=list(loc)) from None
    if refused or b"\\u" in raw or _HUGE.search(raw):
        _walk(value, list(loc))
    return value


def _walk(root: Any, loc: list[str | int]) -> None:
    """Raise at the first string or number of ``root`` that :func:`loads` refuses
    (iterative: a body nested as deep as the parser allows does not overflow)."""
    stack: list[tuple[Any, list[str | int]]] = [(root, loc)]
    while stack:
        value, here = stack.pop()
        if isinstance(value, str):
            check_text(value, here)
        elif isinstance(value, _Refused):
            raise InvalidInput(f"{_where(here)} {value.why}", loc=here)
        elif isinstance(value, float) and math.isinf(value):
            raise InvalidInput(f"{_where(here)} is past the largest float", loc=here)
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                check_text(key, here, f"a key of {_where(here)}")
                stack.append((item, [*here, key]))
        elif isinstance(value, list):
            stack.extend((item, [*here, i]) for i, item in reversed(list(enumerate(value))))


def _where(loc: Loc) -> str:
    """``["body", "model", "layers", 0, "units"]`` → ``model.layers[0].units``."""
    parts = list(loc[1:]) if len(loc) > 1 and loc[0] == "body" else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "the body"
