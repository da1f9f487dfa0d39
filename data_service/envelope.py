"""The vocabulary of stored documents (pure: no I/O, no models).

A stored document (the envelope) is flat, CouchDB style::

    {"_id": "<couchdb uuid>", "_rev": "...", "type": "user_v1.0",
     "meta": {"created_at": "...Z", "updated_at": "...Z", "deleted_at": "...Z"?},
     <property>: <stored value>, ...}

``id``, ``type``, ``meta``, ``sig`` and ``_``-prefixed names are reserved, so
properties never collide with the envelope. What a write makes of one (a new document,
a replaced one, a soft delete, the representation callers see) is the lifecycle's
(``lifecycle.documents``); which declared type reads one is the models'
(``models.model_of``).
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Any

from .vocabulary import CouchDBAnswer, Stored

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


def timestamp(at: dt.datetime) -> str:
    """RFC 3339 UTC timestamp with milliseconds, e.g. ``2026-11-26T15:00:00.123Z``."""
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> str:
    return timestamp(dt.datetime.now(dt.UTC))


def valid_id(docid: str) -> bool:
    return ID_PATTERN.fullmatch(docid) is not None  # ``match`` would let "id\n" through ``$``


def tag_of(doc: Stored) -> tuple[str, int, int] | None:
    """(name, major, minor) of a stored doc's type tag, None if it has none."""
    match = TYPE_TAG.match(str(doc.get("type", "")))
    return (match["name"], int(match["major"]), int(match["minor"])) if match else None


def is_deleted(doc: Stored) -> bool:
    return bool(doc.get("meta", {}).get("deleted_at"))


def unreadable(docid: str) -> Stored:
    """Stands for a stored document the CouchDB client could not parse (nested deeper
    than its parser allows): it fails verification like any other poisoned document.
    (CouchDB refuses ``_``-names it does not know, so no stored document looks like it.)"""
    return {"_id": docid, UNREADABLE: True}


def row_doc(row: CouchDBAnswer) -> Stored | None:
    """The document of a view row read with ``include_docs`` (``unreadable`` for one the
    client could not parse; None for none)."""
    return unreadable(row["id"]) if row.get("unreadable") else row.get("doc")


def properties(doc: Stored) -> dict[str, Any]:
    """The stored properties of a document (everything but the envelope)."""
    return {k: v for k, v in doc.items() if k not in ENVELOPE}


def strip(doc: Stored) -> Stored:
    """``doc`` without what a read adds (``_conflicts``, ``_revisions`` ...)."""
    return {k: v for k, v in doc.items() if k not in READ_ADDED}
