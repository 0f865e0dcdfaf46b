"""The job list (``GET /v1/jobs``): its filters, its sort, and the cursor that
pages through it under any sort.

Filters, all at once (AND): any of several statuses; every one of several tags
(``job_tags``, exact, case included); a name, exactly, or by its prefix when it
ends with ``*``; a sweep; ``created_after <= created_at < created_before``
(half-open, so consecutive windows neither overlap nor leave a gap).

Sorts: ``-created_at`` (newest first, the default), ``created_at`` (oldest
first), or a name of the latest metrics (``metrics``, the last finished
epoch's History row): ``val_loss`` ascending, ``-val_accuracy`` descending;
jobs without that metric come last either way. Ties, and the jobs without the
metric, are newest first.

The cursor is a keyset: the last row's sort value (as the database computed
it, so comparing with it again is exact), its ``created_at`` and its id, under
the sort it was made for; a cursor of another sort is a 422. The default
sort's cursor is ``{"j": [created_at, id]}``, as before sorts existed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator
from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from fitq.service import paging
from fitq.service.db.models import Job, JobTag
from fitq.service.errors import InvalidInput
from fitq.service.jobs.read import owned_by
from fitq.service.paging import Page

DEFAULT_SORT = "-created_at"
SORT_PATTERN = r"^-?[A-Za-z_][A-Za-z0-9_]{0,99}$"
"""``created_at`` or a History name (``val_loss``), ``-`` first for descending."""
_SORT = re.compile(SORT_PATTERN)
_DATE_FIRST = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_text(value: Any) -> Any:
    """Only ISO 8601 text is a time here (pydantic alone would read ``0.5`` as a
    Unix time, which the parameter's documented format is not)."""
    if isinstance(value, str) and not _DATE_FIRST.match(value):
        raise ValueError("must be an ISO 8601 date and time with its time zone")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
"""A ``created_after``/``created_before``: ISO 8601 with its zone (else a 422 naming it)."""
PREFIX_WILDCARD = "*"
"""A ``name`` filter that ends with it matches the names that start with the rest."""


@dataclass(frozen=True)
class Filters:
    """What ``GET /v1/jobs`` narrows the list to (empty: no filter of that kind)."""

    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    name: str | None = None
    sweep_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.statuses:
            where.append(Job.status.in_(self.statuses))
        for tag in dict.fromkeys(self.tags):
            where.append(Job.id.in_(select(JobTag.job_id).where(JobTag.tag == tag)))
        if self.name is not None:
            where.append(_name_matches(self.name))
        if self.sweep_id is not None:
            where.append(Job.sweep_id == self.sweep_id)
        if self.created_after is not None:
            where.append(Job.created_at >= _utc(self.created_after))
        if self.created_before is not None:
            where.append(Job.created_at < _utc(self.created_before))
        return where


def _name_matches(name: str) -> ColumnElement[bool]:
    """Exactly ``name``, or, for ``prefix*``, every name that starts with ``prefix``:
    ``substr`` rather than ``LIKE``, which SQLite compares without case."""
    if not name.endswith(PREFIX_WILDCARD):
        return Job.name == name
    prefix = name[: -len(PREFIX_WILDCARD)]
    if not prefix:
        return Job.name.is_not(None)
    return func.substr(Job.name, 1, len(prefix)) == prefix


def _utc(at: datetime) -> datetime:
    """``at`` in UTC; an instant outside what a datetime holds in UTC (year 1 east
    of Greenwich, year 9999 west of it) as the nearest one that is."""
    try:
        return at.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if at.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Sort:
    """A parsed ``sort=``: by ``created_at`` or by the latest value of a metric."""

    text: str
    key: str = field(init=False)
    descending: bool = field(init=False)

    def __post_init__(self) -> None:
        if not _SORT.match(self.text):
            raise InvalidInput(
                f"sort must be created_at or a metric name (letters, digits, '_'), "
                f"'-' first for descending (got {self.text!r})",
                loc=["query", "sort"],
            )
        object.__setattr__(self, "descending", self.text.startswith("-"))
        object.__setattr__(self, "key", self.text.lstrip("-"))

    @property
    def by_metric(self) -> bool:
        return self.key != "created_at"

    def value(self, dialect: str) -> ColumnElement[Any]:
        """The metric's latest value (null without it). On SQLite, null too where
        the stored JSON holds a NaN (Python writes one; SQLite before 3.42
        refuses to read it), rather than an error for the whole list."""
        value = Job.metrics[self.key].as_float()
        if dialect == "sqlite":
            return case((func.json_valid(Job.metrics) == 1, value))
        return value


def list_page(
    session: Session,
    owner_id: str,
    filters: Filters,
    *,
    sort: str = DEFAULT_SORT,
    cursor: str | None = None,
    limit: int,
) -> Page[Job]:
    """The owner's jobs that pass ``filters``, in ``sort`` order, after ``cursor``."""
    order = Sort(sort)
    query = select(Job).where(owned_by(owner_id), *filters.conditions())
    if not order.by_metric:
        after = _created_keyset(cursor, order) if cursor else None
        if order.descending:
            rows, more = paging.newest_first(session, query, Job, after, limit)
        else:
            rows, more = _oldest_first(session, query, after, limit)
        next_cursor = _created_cursor(rows[-1], order) if more else None
        return Page(items=rows, next_cursor=next_cursor)
    return _by_metric(session, query, order, cursor, limit)


# -- by created_at -----------------------------------------------------------------


def _created_cursor(row: Job, order: Sort) -> str:
    if order.descending:
        return paging.encode_cursor({"j": paging.keyset_of(row)})
    return paging.encode_cursor({"o": order.text, "k": paging.keyset_of(row)})


def _created_keyset(cursor: str, order: Sort) -> paging.Keyset:
    data = paging.decode_cursor(cursor)
    if isinstance(data, dict) and "j" in data and order.descending:
        return paging.parse_keyset(data["j"])
    _check_sort(data, order)
    return paging.parse_keyset(data["k"])


def _oldest_first(
    session: Session, query: Any, after: paging.Keyset | None, limit: int
) -> tuple[list[Job], bool]:
    if after is not None:
        created, last_id = after
        query = query.where(
            or_(Job.created_at > created, and_(Job.created_at == created, Job.id > last_id))
        )
    ordered = query.order_by(Job.created_at.asc(), Job.id.asc()).limit(limit + 1)
    rows = list(session.scalars(ordered))
    return rows[:limit], len(rows) > limit


# -- by a metric ----------------------------------------------------------------------


def _by_metric(
    session: Session, query: Any, order: Sort, cursor: str | None, limit: int
) -> Page[Job]:
    """Jobs with the metric first, by its value (``order``'s direction), then
    those without; each group's ties newest first."""
    value = order.value(session.get_bind().dialect.name)
    missing = case((value.is_(None), 1), else_=0)
    if cursor:
        query = query.where(_after_metric(cursor, order, value, missing))
    ranked = query.add_columns(value.label("sort_value")).order_by(
        missing.asc(),
        value.desc() if order.descending else value.asc(),
        Job.created_at.desc(),
        Job.id.desc(),
    )
    rows = session.execute(ranked.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last, last_value = rows[-1]
        key = [last_value, last.created_at.isoformat(), last.id]
        next_cursor = paging.encode_cursor({"o": order.text, "k": key})
    return Page(items=[job for job, _ in rows], next_cursor=next_cursor)


def _after_metric(
    cursor: str, order: Sort, value: ColumnElement[Any], missing: ColumnElement[Any]
) -> ColumnElement[bool]:
    """The rows after the cursor's ``[value | null, created_at, id]`` in the
    order of :func:`_by_metric`."""
    data = paging.decode_cursor(cursor)
    _check_sort(data, order)
    key = data["k"]
    if not isinstance(key, list) or len(key) != 3:
        raise paging.bad_cursor()
    last_value = key[0]
    created, last_id = paging.parse_keyset(key[1:])
    older = or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id))
    if last_value is None:  # among the jobs without the metric: only older ones follow
        return and_(missing == 1, older)
    if isinstance(last_value, bool) or not isinstance(last_value, int | float):
        raise paging.bad_cursor()
    try:
        last_value = float(last_value)  # as the database returned it (a forged 10**400 is not)
    except OverflowError:
        raise paging.bad_cursor() from None
    if not math.isfinite(last_value):
        raise paging.bad_cursor()
    beyond = value < last_value if order.descending else value > last_value
    return or_(
        missing == 1,
        and_(missing == 0, or_(beyond, and_(value == last_value, older))),
    )


def _check_sort(data: Any, order: Sort) -> None:
    """422 unless ``data`` is a cursor made for ``order``."""
    if not isinstance(data, dict) or "k" not in data or not isinstance(data.get("o"), str):
        if isinstance(data, dict) and "j" in data:  # the default sort's cursor
            raise _other_sort(DEFAULT_SORT, order)
        raise paging.bad_cursor()
    if data["o"] != order.text:
        raise _other_sort(data["o"], order)


def _other_sort(made_for: str, order: Sort) -> InvalidInput:
    return InvalidInput(
        f"this cursor pages the sort {made_for[:100]!r}, not {order.text!r}: start again "
        "without a cursor",
        loc=["query", "cursor"],
    )
