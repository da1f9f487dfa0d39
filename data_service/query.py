"""Collection queries: parse ``GET /v1/{type}?...`` and plan it on one index view (pure).

A query is equality conditions on a prefix of an index's fields, then on the next
field a range — a lower bound (``[gt|gte]``), an upper bound (``[lt|lte]``), both, or a
``[prefix]`` — and/or a ``sort``. Fields are properties or the service's
``meta.created_at`` / ``meta.updated_at``; the type's listing index is keyed by
``meta.created_at``. ``sha3-512`` and ``encrypt-deterministic`` properties allow
equality only (on their own single-property index): the value is transformed under
every enabled key version and each version becomes one segment of the plan.

The plan's CouchDB ranges are inclusive; exclusive bounds and prefixes are also
checked on each row's key, which keeps results identical whatever collation the
server uses (ICU on CouchDB, code points on the dev server).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .design import META_FIELDS, Index, indexes
from .errors import ServiceError
from .models import MAX_SAFE, ModelType
from .models.formats import utc_date_time
from .problems import Code
from .protection.kinds import KINDS, Kind

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_VALUE = 1024  # characters of one query value: CouchDB answers 431 for URLs past ~8 KB
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
LOWER, UPPER = ("gt", "gte"), ("lt", "lte")
RANGE_OPS = (*LOWER, *UPPER, "prefix")
HIGH = "\ufff0"  # sorts after the strings that start with a prefix (CouchDB's advice)
_CONDITION = re.compile(r"^((?:meta\.)?[a-z][a-z0-9_]*)(?:\[([a-z]+)\])?$")
_META_SCHEMA = {"type": "string", "format": "date-time"}


class QueryError(ServiceError, ValueError):
    """A query that cannot be answered; the message says why (400 invalid_query)."""

    code = Code.INVALID_QUERY

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
        if len(raw) > MAX_VALUE and name != "cursor":
            raise QueryError(f"{name}: at most {MAX_VALUE} characters")
        if name in ("sort", "limit", "cursor", "include_deleted"):
            options[name] = raw
            continue
        match = _CONDITION.match(name)
        field = _field(model, match[1]) if match else None
        if match is None or field is None:
            raise QueryError(f"{name}: not a property of {model.name} (nor one of {', '.join(META_FIELDS)})")
        schema, kind = field
        op = match[2] or "eq"
        if op not in ("eq", *RANGE_OPS):
            raise QueryError(f"{name}: the operators are {', '.join(RANGE_OPS)}")
        if op != "eq" and kind.equality_only:
            raise QueryError(f"{name}: {kind.name} properties allow equality only")
        value = _typed(match[1], schema, raw)
        if op == "prefix" and not isinstance(value, str):
            raise QueryError(f"{name}: prefix needs a string property")
        conditions.append(Condition(match[1], op, value))
    sort, descending = options.get("sort"), False
    if sort is not None:
        descending, sort = sort.startswith("-"), sort.removeprefix("-")
        field = _field(model, sort) if sort[:1] != "-" else None
        if field is None:
            raise QueryError(f"sort: {sort!r} is not a property of {model.name} (nor one of {', '.join(META_FIELDS)})")
        if field[1].equality_only:
            raise QueryError(f"sort: {field[1].name} values have no meaningful order")
    raw_limit = options.get("limit", str(DEFAULT_LIMIT))
    if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_LIMIT):
        raise QueryError(f"limit: a whole number from 1 to {MAX_LIMIT} (ASCII digits)")
    limit = int(raw_limit)
    include_deleted = options.get("include_deleted", "false")
    if include_deleted not in ("true", "false"):
        raise QueryError("include_deleted: true or false")
    return Query(tuple(conditions), sort, descending, limit, include_deleted == "true", options.get("cursor"))


def _field(model: ModelType, name: str) -> tuple[dict, Kind] | None:
    """(schema, protection kind) of a property or meta field; None if there is none."""
    if name in META_FIELDS:
        return _META_SCHEMA, KINDS["plain"]
    prop = model.properties.get(name)
    return (prop.schema, prop.kind) if prop else None


def _typed(name: str, schema: dict, raw: str) -> Any:
    """The value of a condition, parsed as strictly as a JSON body would be (ASCII
    digits, no ``+``, ``_`` or spaces; numbers within ±(2^53-1)); date-times in UTC ``Z``
    form, as they are stored."""
    kind = schema.get("type")
    wrong = QueryError(f"{name}: {raw!r} is not a {kind}")
    if kind in ("integer", "number"):
        if not (_INTEGER if kind == "integer" else _NUMBER).fullmatch(raw):
            raise wrong
        value = int(raw) if _INTEGER.fullmatch(raw) else float(raw)
        if not -MAX_SAFE <= value <= MAX_SAFE:
            raise QueryError(f"{name}: beyond ±{MAX_SAFE}")
        return value
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise wrong
        return raw == "true"
    if kind == "string":
        limit = schema.get("maxLength")
        if isinstance(limit, int) and len(raw) > limit:
            raise QueryError(f"{name}: longer than its {limit} characters")
        return utc_date_time(raw) if schema.get("format") == "date-time" else raw
    raise QueryError(f"{name}: cannot filter on a {kind or 'untyped'} property")


def plan(model: ModelType, query: Query, lookup_values: Callable[[ModelType, str, Any], list]) -> Plan:
    """The index and key ranges answering ``query``. ``lookup_values(model, prop, value)``
    gives the stored forms of a value (every key version for protected properties)."""
    equal = {c.prop: c for c in query.conditions if c.op == "eq"}
    bounds = [c for c in query.conditions if c.op != "eq"]
    ranged = {c.prop for c in bounds}
    if len(ranged) > 1:
        raise QueryError("range conditions on one field per query (the one after the equality conditions)")
    ops = [c.op for c in bounds]
    if (
        len(equal) + len(bounds) != len(query.conditions)
        or set(equal) & ranged
        or ("prefix" in ops and len(ops) > 1)
        or sum(op in LOWER for op in ops) > 1
        or sum(op in UPPER for op in ops) > 1
    ):
        raise QueryError("each field may be filtered once, or twice with a lower and an upper bound")
    for index in indexes(model):
        if _serves(index, equal, next(iter(ranged), None), query.sort):
            prefix = [equal[f] for f in index.fields[: len(equal)]]
            return _plan_on(index, model, prefix, bounds, query.descending, lookup_values)
    wanted = ", ".join(
        [c.prop + ("" if c.op == "eq" else f"[{c.op}]") for c in query.conditions]
        + ([f"sort={'-' if query.descending else ''}{query.sort}"] if query.sort else [])
    )
    available = "; ".join(index.label for index in indexes(model))
    raise QueryError(f"no index of {model.name} serves {wanted}; its indexes: {available}")


def sorts(model: ModelType) -> list[str]:
    """The ``sort`` values a query of ``model`` without filters accepts (the served spec's enum)."""
    found = []
    for name in [*model.properties, *META_FIELDS]:
        for value in (name, f"-{name}"):
            try:
                plan(model, parse(model, {"sort": [value]}), lambda *_: [])
            except QueryError:
                continue
            found.append(value)
    return found


def _serves(index: Index, equal: dict, ranged: str | None, sort: str | None) -> bool:
    fields = index.fields
    if set(fields[: len(equal)]) != set(equal):
        return False
    following = fields[len(equal)] if len(fields) > len(equal) else None
    return all(f in (None, following) for f in (ranged, sort))


def _plan_on(
    index: Index, model: ModelType, equal: list[Condition], bounds: list[Condition], descending: bool, lookup_values
) -> Plan:
    prefixes: list[list] = [[]]
    for condition in equal:
        prefixes = [[*p, v] for p in prefixes for v in lookup_values(model, condition.prop, condition.value)]
    low_tail: list = []
    high_tail: list = [{}]
    checks: list[Callable[[list], bool]] = []
    at = len(equal)
    for bound in bounds:
        value = bound.value
        if bound.op in LOWER:
            low_tail = [value]
        elif bound.op in UPPER:
            high_tail = [value, {}]
        else:
            low_tail, high_tail = [value], [value + HIGH]
            checks.append(partial(_has_prefix, at, value))
        if bound.op in ("gt", "lt"):
            checks.append(partial(_differs, at, value))
    segments = [Segment(p + low_tail, p + high_tail) for p in prefixes]
    if descending:
        segments.reverse()
    return Plan(index, tuple(segments), descending, lambda key: all(check(key) for check in checks))


# Checked on each row's key: CouchDB's ranges are inclusive, and its collation (ICU) is not
# Python's, so exclusive bounds and prefixes are decided here, the same on every server.


def _has_prefix(at: int, prefix: str, key: list) -> bool:
    return isinstance(key[at], str) and key[at].startswith(prefix)


def _differs(at: int, value: Any, key: list) -> bool:
    return key[at] != value
