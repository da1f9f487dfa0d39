"""schemathesis hooks for scripts/schemathesis.sh (named in scripts/schemathesis.toml).

They only shape the *positive* cases where a valid value cannot come from a schema: the
spec stays what the server enforces, and negative cases go out as generated.

* ``cursor``, ``since`` and ``Last-Event-ID`` hold opaque tokens the service issued: a
  generated one is well formed yet never genuine (400). Positive cases leave them out
  (``since=now`` stays); the stateful phase still follows real ones.
* An ``Idempotency-Key`` reused with another body is a 422 by design: positive cases
  get the key suffixed with a digest of the body, so a repeat is a replay.
* A property with ``x-max-bytes`` (bcrypt: 72 UTF-8 bytes) cannot be bounded in bytes by
  JSON Schema: positive bodies over it are dropped.
* Numbers beyond ±(2^53−1) and nesting deeper than 64 levels are refused in any body
  (422, README "Limits"); typed properties declare the bounds, free-form values
  (``{"type": "object"}``) cannot: positive bodies holding such values are dropped.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import schemathesis

TOKENS = {"query": ("cursor", "since"), "headers": ("Last-Event-ID",)}


def _positive(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if not _positive(case):
        return case
    for container, names in TOKENS.items():
        values = getattr(case, container, None)
        if values:
            for name in names:
                if name in values and values[name] != "now":
                    del values[name]
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str):
        digest = hashlib.sha256(json.dumps(case.body, sort_keys=True, default=str).encode()).hexdigest()[:16]
        headers["Idempotency-Key"] = f"{key[:180]}-{digest}"
    return case


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    if not _positive(case) or not isinstance(case.body, dict):
        return True
    schema = _body_schema(case)
    return _within_bytes(case.body, schema) and _within_limits(case.body)


MAX_SAFE, MAX_NESTING = 2**53 - 1, 64  # data_service.models.limits


def _within_limits(body: Any) -> bool:
    stack = [(body, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING:
                return False
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, int | float) and not isinstance(item, bool) and not -MAX_SAFE <= item <= MAX_SAFE:
            return False
    return True


def _body_schema(case: Any) -> dict:
    """The resolved JSON Schema of the case's JSON body (empty when there is none)."""
    try:
        body = case.operation.definition.raw.get("requestBody", {})
        media = next(iter(body.get("content", {}).values()), {})
        schema = media.get("schema", {})
        return _resolve(case.operation.schema.raw_schema, schema)
    except (AttributeError, KeyError, StopIteration, TypeError):
        return {}


def _resolve(spec: dict, schema: dict) -> dict:
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/"):
        node: Any = spec
        for part in schema["$ref"][2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema if isinstance(schema, dict) else {}


def _within_bytes(value: Any, schema: dict) -> bool:
    """False if a string under a property with ``x-max-bytes`` (also inside ``anyOf``) is longer in UTF-8."""
    if not isinstance(value, dict):
        return True
    for name, item in value.items():
        sub = schema.get("properties", {}).get(name, {})
        for option in [sub, *sub.get("anyOf", [])]:
            limit = option.get("x-max-bytes")
            if isinstance(limit, int) and isinstance(item, str) and len(item.encode("utf-8", "surrogatepass")) > limit:
                return False
    return True
