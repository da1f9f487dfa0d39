"""Canonical JSON: the bytes signatures and digests are computed over (pure).

UTF-8, object keys sorted by code point, no insignificant whitespace (orjson
``OPT_SORT_KEYS``), and floats with an integral value written as integers (``2.0`` →
``2``): JavaScript JSON parsers (pouchdb-server, CouchDB views) give ``2.0`` back as
``2``, so the two must sign alike.

Values come from the database too, where anyone with write access may have put
anything. Whatever cannot be encoded — nesting deeper than ``MAX_DEPTH``, a
non-finite float, an integer beyond 64 bits, a non-string key — raises
``NotCanonical`` and nothing else, so a caller turns it into one answer (an integrity
violation for stored bytes, a validation error for a request body). The depth is
checked iteratively before anything recurses.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import orjson

MAX_DEPTH = 250  # nested arrays/objects; orjson refuses to encode more than 254
_INTS = (-(2**63), 2**64 - 1)  # what orjson encodes


class NotCanonical(ValueError):
    """A value with no canonical form; the message says why (never the value)."""


def canonical(value: Any) -> bytes:
    check(value)
    try:
        return orjson.dumps(integral(value), option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError: a type JSON does not have
        raise NotCanonical(f"not encodable as JSON ({exc})") from None


def check(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """NotCanonical unless ``value`` has a canonical form no deeper than ``max_depth``
    (iterative: a hostile depth cannot exhaust the stack)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise NotCanonical(f"nested more than {max_depth} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict) and not all(isinstance(key, str) for key in item):
                raise NotCanonical("an object key is not a string")
        elif isinstance(item, float) and not math.isfinite(item):
            raise NotCanonical("a number is not finite")
        elif isinstance(item, int) and not isinstance(item, bool) and not _INTS[0] <= item <= _INTS[1]:
            raise NotCanonical("an integer is beyond 64 bits")


def integral(value: Any) -> Any:
    """``value`` with integral floats within ±2^53 as integers, at any depth (beyond
    that a double is not an integer any JSON parser would give back). Recursive: call
    it on values ``check`` accepted."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def digest(value: Any, size: int = 64) -> str:
    """A stable hex digest of a JSON value (``size`` hex digits of its SHA-256)."""
    return hashlib.sha256(canonical(value)).hexdigest()[:size]
