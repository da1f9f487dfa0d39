"""Collection queries: parse ``GET /v1/{type}?...`` and plan it on one index view (pure).

A query is equality conditions on a prefix of an index's properties, then at most
one range (``[gt|gte|lt|lte]``) or ``[prefix]`` condition and/or a ``sort`` on the
next property. ``sha3-512`` and ``encrypt-deterministic`` properties allow equality
only (on their own single-property index): the value is transformed under every
enabled key version and each version becomes one segment of the plan.

The plan's CouchDB ranges are inclusive; exclusive bounds and prefixes are also
checked on each row's key, which keeps results identical whatever collation the
server uses (ICU on CouchDB, code points on the dev server).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .design import Index, indexes
from .errors import ServiceError
from .models import ModelType

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
RANGE_OPS = ("gt", "gte", "lt", "lte", "prefix")
HIGH = "\ufff0"  # sorts after the strings that start with a prefix (CouchDB's advice)
_CONDITION = re.compile(r"^([a-z][a-z0-9_]*)(?:\[([a-z]+)\])?$")


class QueryError(ServiceError, ValueError):
    """A query that cannot be answered; the message says why (400 invalid_query)."""

    code = "invalid_query"

    @property
    def detail(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Condition:
    prop: str
    op: str  # "eq" or one of RANGE_OPS
    value: Any


@dataclass(frozen=True)
class Query:
    conditions: tuple[Condition, ...] = ()
    sort: str | None = None
    descending: bool = False
    limit: int = DEFAULT_LIMIT
    include_deleted: bool = False
    cursor: str | None = None

    def signature(self) -> list:
        """What a cursor is bound to: everything but the page size and the cursor."""
        return [[c.prop, c.op, c.value] for c in self.conditions] + [self.sort, self.descending, self.include_deleted]


@dataclass(frozen=True)
class Segment:
    low: list
    high: list


@dataclass(frozen=True)
class Plan:
    index: Index
    segments: tuple[Segment, ...]
    descending: bool
    accepts: Callable[[list], bool] = field(default=lambda key: True)


def parse(model: ModelType, args: dict[str, list[str]]) -> Query:
    """``args`` as Tornado gives them: name → list of values."""
    conditions, options = [], {}
    for name, values in args.items():
        if len(values) != 1:
            raise QueryError(f"{name}: give it once")
        raw = values[0]
        if name in ("sort", "limit", "cursor", "include_deleted"):
            options[name] = raw
            continue
        match = _CONDITION.match(name)
        prop = model.properties.get(match[1]) if match else None
        if match is None or prop is None:
            raise QueryError(f"{name}: not a property of {model.name}")
        op = match[2] or "eq"
        if op not in ("eq", *RANGE_OPS):
            raise QueryError(f"{name}: the operators are {', '.join(RANGE_OPS)}")
        if op != "eq" and prop.kind.equality_only:
            raise QueryError(f"{name}: {prop.protection} properties allow equality only")
        value = _typed(prop.name, prop.schema, raw)
        if op == "prefix" and not isinstance(value, str):
            raise QueryError(f"{name}: prefix needs a string property")
        conditions.append(Condition(prop.name, op, value))
    sort, descending = options.get("sort"), False
    if sort is not None:
        descending, sort = sort.startswith("-"), sort.lstrip("-")
        if sort not in model.properties:
            raise QueryError(f"sort: {sort!r} is not a property of {model.name}")
        if model.properties[sort].kind.equality_only:
            raise QueryError(f"sort: {model.properties[sort].protection} values have no meaningful order")
    try:
        limit = int(options.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise QueryError("limit: a number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: between 1 and {MAX_LIMIT}")
    include_deleted = options.get("include_deleted", "false")
    if include_deleted not in ("true", "false"):
        raise QueryError("include_deleted: true or false")
    return Query(tuple(conditions), sort, descending, limit, include_deleted == "true", options.get("cursor"))


def _typed(name: str, schema: dict, raw: str) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        if kind == "boolean":
            return {"true": True, "false": False}[raw]
    except (ValueError, KeyError):
        raise QueryError(f"{name}: {raw!r} is not a {kind}") from None
    if kind == "string":
        return raw
    raise QueryError(f"{name}: cannot filter on a {kind or 'untyped'} property")


def plan(model: ModelType, query: Query, lookup_values: Callable[[ModelType, str, Any], list]) -> Plan:
    """The index and key ranges answering ``query``. ``lookup_values(model, prop, value)``
    gives the stored forms of a value (every key version for protected properties)."""
    equal = {c.prop: c for c in query.conditions if c.op == "eq"}
    ranged = [c for c in query.conditions if c.op != "eq"]
    if len(ranged) > 1:
        raise QueryError("one range or prefix condition per query")
    if len(equal) + len(ranged) != len(query.conditions):
        raise QueryError("each property may be filtered once")
    bound = ranged[0] if ranged else None
    for index in indexes(model):
        if _serves(index, equal, bound, query.sort):
            return _plan_on(
                index, model, [equal[p] for p in index.properties[: len(equal)]], bound, query.descending, lookup_values
            )
    wanted = ", ".join(
        [c.prop + ("" if c.op == "eq" else f"[{c.op}]") for c in query.conditions]
        + ([f"sort={'-' if query.descending else ''}{query.sort}"] if query.sort else [])
    )
    available = "; ".join(index.label for index in indexes(model))
    raise QueryError(f"no index of {model.name} serves {wanted}; its indexes: {available}")


def _serves(index: Index, equal: dict, bound: Condition | None, sort: str | None) -> bool:
    props = index.properties
    if set(props[: len(equal)]) != set(equal) or (not props and (equal or bound or sort)):
        return False
    following = props[len(equal)] if len(props) > len(equal) else None
    return all(p in (None, following) for p in (bound and bound.prop, sort))


def _plan_on(
    index: Index, model: ModelType, equal: list[Condition], bound: Condition | None, descending: bool, lookup_values
) -> Plan:
    prefixes: list[list] = [[]]
    for condition in equal:
        prefixes = [[*p, v] for p in prefixes for v in lookup_values(model, condition.prop, condition.value)]
    low_tail: list = []
    high_tail: list = [{}]
    accepts: Callable[[list], bool] = lambda key: True  # noqa: E731
    if bound is not None:
        at, value = len(equal), bound.value
        if bound.op in ("gt", "gte"):
            low_tail = [value]
        elif bound.op in ("lt", "lte"):
            high_tail = [value, {}]
        else:
            low_tail, high_tail = [value], [value + HIGH]
        if bound.op in ("gt", "lt"):
            accepts = lambda key: key[at] != value  # noqa: E731
        elif bound.op == "prefix":
            accepts = lambda key: isinstance(key[at], str) and key[at].startswith(value)  # noqa: E731
    segments = [Segment(p + low_tail, p + high_tail) for p in prefixes]
    if descending:
        segments.reverse()
    return Plan(index, tuple(segments), descending, accepts)
