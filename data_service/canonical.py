"""Canonical JSON: the bytes signatures and digests are computed over (pure).

UTF-8, object keys sorted by code point, no insignificant whitespace (orjson
``OPT_SORT_KEYS``), and floats with an integral value written as integers (``2.0`` →
``2``): JavaScript JSON parsers (pouchdb-server, CouchDB views) give ``2.0`` back as
``2``, so the two must sign alike.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def canonical(value: Any) -> bytes:
    return orjson.dumps(integral(value), option=orjson.OPT_SORT_KEYS)


def integral(value: Any) -> Any:
    """``value`` with integral floats within ±2^53 as integers, at any depth (beyond
    that a double is not an integer any JSON parser would give back)."""
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
