"""What a write makes of a stored document, and what callers see of one (pure).

Callers see the representation::

    {"id": "<id>", "meta": {"type": "user", "version": "1.0", "created_at": ..., "updated_at": ...},
     <readable property>: <value>, ...}
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..envelope import tag_of, timestamp
from ..models import ModelType
from ..vocabulary import Representation, Stored


def new(model: ModelType, docid: str, props: dict[str, Any], at: str) -> Stored:
    return {"_id": docid, "type": model.tag, "meta": {"created_at": at, "updated_at": at}, **props}


def later(current: Stored, at: str) -> str:
    """``at``, or 1 ms after ``current``'s ``updated_at`` if the clock has not passed it:
    a write is always later than what it overwrites, so a leaf restored to the content it
    overwrote (``DocumentStore._undo``) always loses to a concurrent write."""
    previous = str(current.get("meta", {}).get("updated_at") or "")
    if at > previous:
        return at
    return timestamp(dt.datetime.fromisoformat(previous) + dt.timedelta(milliseconds=1))


def replaced(model: ModelType, current: Stored, props: dict[str, Any], at: str) -> Stored:
    """``current`` with new properties; keeps id, rev and creation time, and the tag of a
    newer minor version (whose properties the writer kept as they were)."""
    meta = {**current.get("meta", {}), "updated_at": later(current, at)}
    tag = tag_of(current)
    newer = tag is not None and tag[:2] == (model.name, model.major) and tag[2] > model.minor
    return {
        "_id": current["_id"],
        "_rev": current["_rev"],
        "type": current["type"] if newer else model.tag,
        "meta": meta,
        **props,
    }


def soft_deleted(current: Stored, at: str) -> Stored:
    at = later(current, at)
    meta = {**current.get("meta", {}), "updated_at": at, "deleted_at": at}
    return {**current, "meta": meta}


def representation(model: ModelType, doc: Stored, props: dict[str, Any]) -> Representation:
    """What callers see: ``props`` are already unprotected; unreadable ones are dropped."""
    meta = doc.get("meta", {})
    out_meta = {
        "type": model.name,
        "version": _version(doc),
        "created_at": meta.get("created_at"),
        "updated_at": meta.get("updated_at"),
    }
    if meta.get("deleted_at"):
        out_meta["deleted_at"] = meta["deleted_at"]
    readable = {k: v for k, v in props.items() if k in model.properties and model.properties[k].readable}
    return {"id": doc["_id"], "meta": out_meta, **readable}


def _version(doc: Stored) -> str:
    tag = tag_of(doc)
    return f"{tag[1]}.{tag[2]}" if tag else ""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge recursively, ``null`` removes."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
