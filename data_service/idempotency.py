"""Idempotency-Key records (pure: no I/O).

A POST with an ``Idempotency-Key`` first *claims* the key by creating an ordinary
CouchDB document under an id derived from the type and the key. Ordinary documents
are what make the claim atomic on every CouchDB: a PUT without ``_rev`` over an
existing id is a 409 for the loser. (``_local`` documents have no revision check on
CouchDB 3 — a second PUT silently wins — so they cannot be used.)

A record::

    {"_id": "ds-idem-<sha256(type NUL key)[:40]>", "type": "ds:idempotency_v1",
     "key": <that digest>, "doc_id": <the document's id>, "body": <sha256 of the body>,
     "created_at": ..., "expires_at": ..., "sig": {...}}

It is signed like every document (so an edited record is an integrity violation,
never another caller's document or an id chosen by whoever edited it), carries an
internal type no declared type can have (so no type's view and no type check sees
it) and expires: an expired record counts as absent and the background sweep
deletes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from .canonical import canonical
from .envelope import timestamp

KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # an Idempotency-Key: 1-200 visible ASCII characters (the spec's pattern)
TYPE = "ds:idempotency_v1"
ID_PREFIX = "ds-idem-"
SETTLE = 10.0  # seconds after which a claim whose document is missing is taken for a dead claimer's


def key_digest(type_name: str, key: str) -> str:
    return hashlib.sha256(f"{type_name}\0{key}".encode()).hexdigest()


def record_id(type_name: str, key: str) -> str:
    return ID_PREFIX + key_digest(type_name, key)[:40]


def body_digest(body: Any) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def new_record(type_name: str, key: str, docid: str, body: Any, now: dt.datetime, ttl: float) -> dict:
    """An unsigned record claiming ``key`` for ``docid``."""
    return {
        "_id": record_id(type_name, key),
        "type": TYPE,
        "key": key_digest(type_name, key),
        "doc_id": docid,
        "body": body_digest(body),
        "created_at": timestamp(now),
        "expires_at": timestamp(now + dt.timedelta(seconds=ttl)),
    }


def is_record(doc: dict) -> bool:
    return doc.get("type") == TYPE


def expired(record: dict, now: dt.datetime) -> bool:
    return str(record.get("expires_at", "")) <= timestamp(now)


def settled(record: dict, now: dt.datetime) -> bool:
    """Claimed long enough ago that its claimer finished or died, and any rival claim
    stored at the same moment reached every copy (internal replication)."""
    return str(record.get("created_at", "")) <= timestamp(now - dt.timedelta(seconds=SETTLE))
