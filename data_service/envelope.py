"""Stored documents and their representation (pure: no I/O).

A stored document (the envelope) is flat, CouchDB style::

    {"_id": "<couchdb uuid>", "_rev": "...", "type": "user_v1.0",
     "meta": {"created_at": "...Z", "updated_at": "...Z", "deleted_at": "...Z"?},
     <property>: <stored value>, ...}

Callers see the representation::

    {"id": "<id>", "meta": {"type": "user", "version": "1.0", "created_at": ..., "updated_at": ...},
     <readable property>: <value>, ...}

``id``, ``type``, ``meta``, ``sig`` and ``_``-prefixed names are reserved, so
properties never collide with the envelope.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import ModelType

# A document id, whole (``fullmatch``): the served spec's ``DocumentId`` pattern is this one.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
TYPE_TAG = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)_v(?P<major>\d+)\.(?P<minor>\d+)$")
READ_ADDED = frozenset({"_conflicts", "_deleted_conflicts", "_revisions"})  # what reads may add
UNREADABLE = "_unreadable"  # marks a document CouchDB holds but the client cannot parse (``unreadable``)
UNSIGNED = READ_ADDED | {"_rev", "sig"}  # what the signature does not cover
ENVELOPE = UNSIGNED | {"_id", "type", "meta"}  # everything that is not a property


class Removed(StrEnum):
    """Why the service wrote a tombstone (``meta.removed`` of a signed tombstone)."""

    DELETE = "delete"  # a caller deleted the document
    WITHDRAWN = "withdrawn"  # a write stored below quorum that lost its race (``store.races``)
    SUPERSEDED = "superseded"  # a losing leaf of a merged conflict (``store.reconciler``)
    EXPIRED = "expired"  # an Idempotency-Key record past its expiry


def stamp(at: dt.datetime) -> str:
    """RFC 3339 UTC timestamp with milliseconds, e.g. ``2026-11-26T15:00:00.123Z``."""
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> str:
    return stamp(dt.datetime.now(dt.UTC))


def valid_id(docid: str) -> bool:
    return ID_PATTERN.fullmatch(docid) is not None  # ``match`` would let "id\n" through ``$``


def tag_of(doc: dict) -> tuple[str, int, int] | None:
    """(name, major, minor) of a stored doc's type tag, None if it has none."""
    match = TYPE_TAG.match(str(doc.get("type", "")))
    return (match["name"], int(match["major"]), int(match["minor"])) if match else None


def is_of(model: ModelType, doc: dict) -> bool:
    """A stored doc belongs to ``model`` when its tag has the same name and major version."""
    tag = tag_of(doc)
    return tag is not None and tag[:2] == (model.name, model.major)


def is_older(model: ModelType, doc: dict) -> bool:
    """A stored doc of an older major of ``model`` that its migrations upgrade."""
    tag = tag_of(doc)
    return tag is not None and tag[0] == model.name and tag[1] < model.major and model.migrates_from(tag[1])


def model_of(models: Iterable[ModelType], doc: dict) -> ModelType | None:
    """The declared type that reads a stored doc (its own major, or upgraded), if any."""
    return next((model for model in models if is_of(model, doc) or is_older(model, doc)), None)


def is_deleted(doc: dict) -> bool:
    return bool(doc.get("meta", {}).get("deleted_at"))


def unreadable(docid: str) -> dict:
    """Stands for a stored document the CouchDB client could not parse (nested deeper
    than its parser allows): it fails verification like any other poisoned document.
    (CouchDB refuses ``_``-names it does not know, so no stored document looks like it.)"""
    return {"_id": docid, UNREADABLE: True}


def row_doc(row: dict) -> dict | None:
    """The document of a view row read with ``include_docs`` (``unreadable`` for one the
    client could not parse; None for none)."""
    return unreadable(row["id"]) if row.get("unreadable") else row.get("doc")


def properties(doc: dict) -> dict[str, Any]:
    """The stored properties of a document (everything but the envelope)."""
    return {k: v for k, v in doc.items() if k not in ENVELOPE}


def strip(doc: dict) -> dict:
    """``doc`` without what a read adds (``_conflicts``, ``_revisions`` ...)."""
    return {k: v for k, v in doc.items() if k not in READ_ADDED}


def new(model: ModelType, docid: str, props: dict[str, Any], at: str) -> dict:
    return {"_id": docid, "type": model.tag, "meta": {"created_at": at, "updated_at": at}, **props}


def later(current: dict, at: str) -> str:
    """``at``, or 1 ms after ``current``'s ``updated_at`` if the clock has not passed it:
    a write is always later than what it overwrites, so a leaf restored to the content it
    overwrote (``DocumentStore._undo``) always loses to a concurrent write."""
    previous = str(current.get("meta", {}).get("updated_at") or "")
    if at > previous:
        return at
    return stamp(dt.datetime.fromisoformat(previous) + dt.timedelta(milliseconds=1))


def replaced(model: ModelType, current: dict, props: dict[str, Any], at: str) -> dict:
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


def soft_deleted(current: dict, at: str) -> dict:
    at = later(current, at)
    meta = {**current.get("meta", {}), "updated_at": at, "deleted_at": at}
    return {**current, "meta": meta}


def representation(model: ModelType, doc: dict, props: dict[str, Any]) -> dict:
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


def _version(doc: dict) -> str:
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
