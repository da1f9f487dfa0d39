"""A verified change feed of one type: what changed, as callers see it.

CouchDB's ``_changes`` is read with the documents; each one of the type is verified
and turned into its representation (decrypted, write-only properties omitted), a
document failing its check is reported in ``omitted`` and never passed on — whatever
type it claims: a document whose type was changed in the database must not vanish
from the feed it belonged to, so documents of other types are verified too and only
the valid ones skipped — and a hard delete is passed on as ``{"id", "rev", "deleted": true}`` (a tombstone keeps no
type, so every type's feed reports it: ids are not secret). The position is an opaque
token — CouchDB's sequence sealed with the service's key and bound to the database and
the type — so a consumer resumes exactly where it left off, on a cluster too (where
CouchDB may deliver a change again after a resume: consumers dedupe by id and rev).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..couchdb import Database
from ..envelope import row_doc
from ..lifecycle import Lifecycle
from ..models import MigrationFailed, ModelType, model_of
from ..protection import IntegrityViolation, KeyUnavailable
from ..query import QueryError
from ..revisions import generation
from ..vocabulary import CouchDBAnswer, JSONObject, Stored
from .errors import DocumentNotFound
from .reader import Reader
from .reads import Held

NOW = "now"


@dataclass
class Changes:
    # ("change" | "omitted", item) in feed order; item["position"]: resume after it
    events: list[tuple[str, JSONObject]]
    last: str  # the token to resume from

    @property
    def results(self) -> list[JSONObject]:
        return [item for kind, item in self.events if kind == "change"]

    @property
    def omitted(self) -> list[JSONObject]:
        return [item for kind, item in self.events if kind == "omitted"]


def position(lifecycle: Lifecycle, db: Database, model: ModelType, token: str | None) -> Any:
    """CouchDB's sequence a token holds (``0`` for none, ``"now"`` for now)."""
    if token is None:
        return 0
    if token == NOW:
        return NOW
    try:
        held = lifecycle.keys.unseal(token)
        if held["db"] == db.name and held["type"] == model.name and held["major"] == model.major:
            return held["seq"]
    except (ValueError, KeyError, TypeError):
        pass
    raise QueryError("since: not a position of this type's change feed")


def token(lifecycle: Lifecycle, db: Database, model: ModelType, seq: Any) -> str:
    return lifecycle.keys.seal({"db": db.name, "type": model.name, "major": model.major, "seq": seq})


async def read_changes(
    db: Database, reader: Reader, model: ModelType, since: str | None, limit: int, wait: float | None
) -> Changes:
    """The changes after ``since``, at most ``limit`` CouchDB changes looked at; with
    ``wait`` (seconds) a long poll that answers as soon as something changed."""
    lifecycle = reader.lifecycle
    seq = position(lifecycle, db, model, since)
    answer = await db.changes(
        since=seq,
        feed="longpoll" if wait else "normal",
        timeout=wait or 30.0,
        limit=limit,
        include_docs=True,
        style="all_docs",
    )
    events: list[tuple[str, JSONObject]] = []
    for change in answer.get("results", ()):
        doc = row_doc(change) or {}
        rev = change["changes"][0]["rev"] if change.get("changes") else doc.get("_rev")
        after = token(lifecycle, db, model, change["seq"])  # resuming from here skips this change only
        if change.get("deleted"):
            events.append(("change", {"id": change["id"], "rev": rev, "deleted": True, "position": after}))
        elif doc and not doc["_id"].startswith("_design/"):
            try:
                current = await _opened(reader, model, change, doc)
                if current is not None:
                    shown = lifecycle.representation(model, current)
                    events.append(
                        ("change", {"id": doc["_id"], "rev": current["_rev"], "doc": shown, "position": after})
                    )
            except IntegrityViolation as exc:
                events.append(("omitted", {"id": doc["_id"], "code": exc.code, "position": after}))
            except (KeyUnavailable, MigrationFailed) as exc:  # of this type only: another's is none of its business
                if model_of([model], doc):
                    events.append(("omitted", {"id": doc["_id"], "code": exc.code, "position": after}))
    return Changes(events, token(lifecycle, db, model, answer.get("last_seq", seq)))


async def _opened(reader: Reader, model: ModelType, change: CouchDBAnswer, doc: Stored) -> Stored | None:
    """The changed document as ``model`` (verified first, an older version upgraded), or
    None for another type's. A leaf of a higher generation than the winner is a deleted
    one (CouchDB's winner is the highest live leaf): the trace of a rollback, so the
    document is read whole first."""
    level = generation(doc.get("_rev")) or 0  # (none for a document the client could not parse)
    if doc.get("_rev") and any((generation(c.get("rev")) or 0) > level for c in change.get("changes", ())):
        held = await reader.reads.one(doc["_id"])
    else:
        held = Held(doc["_id"], doc)
    try:
        return await reader.open(model, held)
    except DocumentNotFound:
        return None
