"""Collection queries: a page of documents from the index view serving a query
(planned by ``query``), keyset-paged across the plan's segments.

A cursor (``next``) is sealed by the keyring (encrypted, authenticated, bound to the
deployment) and holds the position after the last item returned — segment, view key,
document id — plus a digest of everything that position depends on: the type and
version, the index (design document), the filters, the order and every segment's
bounds (so the lookup key versions protected values were looked up under), and an
expiry. A cursor from another query, type, index, database or key set, an expired one,
or one whose position lies outside its segment is a 400.

Every row's document is verified before anything else is looked at: one that fails
(edited, poisoned, under a key this sidecar lacks) is left out and named in
``omitted``, whatever made it fail — a changed deleted marker included.

With the read cache serving (``CachedDocs``) a page reads its view rows without the
documents, takes the representations the cache holds (verified when they were stored)
if the stored document each was made from puts it at its row's key (else the document
changed since, and the entry goes), and fetches only the others (``_all_docs``), which
it then remembers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..cache import Cache, Entry, Ticket
from ..canonical import digest
from ..couchdb import BadRequest, Database
from ..design import VIEW, Index
from ..envelope import is_deleted, row_doc
from ..models import ModelType, is_of
from ..protection import IntegrityViolation, Keyring, KeyUnavailable
from ..query import Plan, Query, QueryError, plan
from ..vocabulary import CouchDBAnswer, JSONObject, Representation, Stored
from .errors import DocumentNotFound
from .reader import Reader
from .reads import Held, Reads
from .results import Page

SAMPLE_EVERY = 8  # while pages mostly miss the cache, one in this many still goes through it (and warms it)


@dataclass
class CachedDocs:
    """The read cache's part in queries. A page whose documents mostly miss costs two
    round trips (rows, then documents) instead of one, so while the hit rate (a moving
    average over pages) is below a half, pages read their documents with the view, all
    but every ``SAMPLE_EVERY``-th."""

    cache: Cache
    remember: Callable[[ModelType, Stored, Representation, Ticket], None]  # (model, stored, representation, ticket)
    hit_rate: float = 1.0
    pages: int = 0

    def wanted(self) -> bool:
        self.pages += 1
        return self.cache.serving and (self.hit_rate >= 0.5 or self.pages % SAMPLE_EVERY == 0)

    async def fill(self, reads: Reads, model: ModelType, index: Index, rows: list[CouchDBAnswer]) -> None:
        """Give each row its cache ``entry`` (one whose document ``index`` puts at the row's
        key), or what CouchDB holds for it (``held``, every leaf read: conflicts and
        tombstones above included) and the ``ticket`` taken before reading it."""
        missing: dict[str, list[CouchDBAnswer]] = {}  # id → its rows (a view may name a document twice)
        for row in rows:
            if (entry := self.cache.get(row["id"], model.name, _at(index, row["key"]))) is not None:
                row["entry"] = entry
            else:
                missing.setdefault(row["id"], []).append(row)
        if rows:
            self.hit_rate = 0.8 * self.hit_rate + 0.2 * (1 - sum(map(len, missing.values())) / len(rows))
        if not missing:
            return
        tickets = {docid: self.cache.ticket(docid) for docid in missing}
        for docid, held in (await reads.many(missing)).items():
            for row in missing[docid]:  # its document as it is now, or none (deleted since)
                row.update(held=held, ticket=tickets[docid])

    def keep(self, model: ModelType, row: CouchDBAnswer, doc: Stored, shown: Representation) -> None:
        """Remember a document ``fill`` fetched (opened by now) if a GET would answer the
        same: live, of ``model``'s own version."""
        if "ticket" in row and is_of(model, doc) and not is_deleted(doc):
            self.remember(model, doc, shown, row["ticket"])


def _at(index: Index, key: Any) -> Callable[[Entry], bool]:
    """Whether an entry's stored document is at ``key`` in ``index``: a body spliced under
    a row it does not produce (the document changed since it was cached, the feed has not
    said so yet) would answer that row with what the document no longer says."""
    return lambda entry: bool(entry.stored) and index.key(orjson.loads(entry.stored)) == key


async def run_query(
    db: Database,
    reader: Reader,
    model: ModelType,
    query: Query,
    cursor_ttl: float,
    clock: Callable[[], float] = time.time,
    cached: CachedDocs | None = None,
) -> Page:
    """The page of ``query``; cursors expire ``cursor_ttl`` seconds after they were issued."""
    lifecycle = reader.lifecycle
    source = cached if cached is not None and cached.wanted() else None
    chosen = plan(model, query, lifecycle.lookup_values)
    binding = _binding(lifecycle.keys, model, query, chosen)
    segment, after = 0, None
    if query.cursor is not None:
        segment, after = _position(lifecycle.keys, query.cursor, binding, chosen, clock())
    found: list[tuple[Any, int, tuple[Any, str]]] = []  # (representation, segment, (key, id))
    omitted: list[JSONObject] = []
    while segment < len(chosen.segments) and len(found) <= query.limit:
        rows, ended = await _rows(db, chosen, segment, after, query.limit + 1 - len(found), source is None)
        if source is not None:
            await source.fill(reader.reads, model, chosen.index, rows)
        elif rows and not (await db.couch.server_info()).supports_deleted_conflicts:
            await _mark_above(reader.reads, rows)
        for row in rows:
            after = (row["key"], row["id"])
            if not chosen.accepts(row["key"]):
                continue
            if (entry := row.get("entry")) is not None:  # verified when it was cached
                found.append((orjson.Fragment(entry.body), segment, after))
            else:
                try:
                    doc = await _open(reader, model, chosen, row, query.include_deleted)
                except (IntegrityViolation, KeyUnavailable) as exc:
                    omitted.append({"id": row["id"], "code": exc.code})
                    continue
                if doc is None:
                    continue
                shown = lifecycle.representation(model, doc)
                found.append((shown, segment, after))
                if source is not None:
                    source.keep(model, row, doc, shown)
            if len(found) > query.limit:
                break
        if ended and len(found) <= query.limit:
            segment, after = segment + 1, None
    next_cursor = None
    if len(found) > query.limit:
        found = found[: query.limit]
        _, last_segment, (key, docid) = found[-1]
        expires = int(clock() + cursor_ttl)
        next_cursor = lifecycle.keys.seal({"b": binding, "s": last_segment, "k": key, "d": docid, "x": expires})
    return Page([item for item, _, _ in found], next_cursor, omitted)


async def _open(reader: Reader, model: ModelType, chosen: Plan, row: CouchDBAnswer, deleted: bool) -> Stored | None:
    """A row's document opened (verified first; reconciled when it has conflicts or a
    deleted leaf above it — then skipped if that moved it out of the row), or None."""
    held = row.get("held")
    if held is None:
        doc = row_doc(row)
        if doc is None:
            return None
        if row.get("value") or row.get("above"):  # a deleted leaf above the winner: read it whole
            held = await reader.reads.one(row["id"])
        else:
            held = Held(row["id"], doc, tuple(doc.get("_conflicts", ())))
    try:
        doc = await reader.open(model, held, deleted=deleted)
    except DocumentNotFound:
        return None
    if not held.settled and chosen.index.key(doc) != row["key"]:
        return None
    return doc


async def _mark_above(reads: Reads, rows: list[CouchDBAnswer]) -> None:
    """The dev server's map functions cannot see deleted leaves: ask its change feed
    which of the rows' documents have one above the winner."""
    suspects = await reads.above([row["id"] for row in rows if row.get("doc")])
    for row in rows:
        row["above"] = row["id"] in suspects


def _binding(keys: Keyring, model: ModelType, query: Query, chosen: Plan) -> str:
    """A digest of everything a cursor's position depends on."""
    segments = [[seg.low, seg.high] for seg in chosen.segments]
    return digest([keys.deployment, model.tag, chosen.index.design, query.signature(), segments, chosen.descending])


def _position(keys: Keyring, token: str, binding: str, chosen: Plan, now: float) -> tuple[int, tuple[Any, str]]:
    """(segment, (key, id)) of a cursor; QueryError unless it is one of this query's."""
    try:
        cursor = keys.unseal(token)
        bound, segment, key, docid, expires = cursor["b"], cursor["s"], cursor["k"], cursor["d"], cursor["x"]
    except (ValueError, KeyError, TypeError):
        raise QueryError("cursor: not a cursor of this service and database (forged, edited or garbled)") from None
    if bound != binding:
        raise QueryError("cursor: from another query (filters, order, type, version, index or key versions differ)")
    if not isinstance(expires, int) or expires < now:
        raise QueryError("cursor: expired; run the query again without it")
    if not (
        isinstance(segment, int)
        and 0 <= segment < len(chosen.segments)
        and isinstance(docid, str)
        and _inside(chosen, segment, key)
    ):
        raise QueryError("cursor: its position lies outside the query's ranges")
    return segment, (key, docid)


def _inside(chosen: Plan, segment: int, key: Any) -> bool:
    """Whether a view key can be a row of ``segment``: one value per index field, the
    segment's fixed (equality) values first, and past the query's own checks."""
    seg = chosen.segments[segment]
    fixed = 0
    while fixed < min(len(seg.low), len(seg.high)) and seg.low[fixed] == seg.high[fixed]:
        fixed += 1
    return (
        isinstance(key, list)
        and len(key) == len(chosen.index.fields)
        and key[:fixed] == seg.low[:fixed]
        and chosen.accepts(key)
    )


async def _rows(
    db: Database, chosen: Plan, segment: int, after: tuple[Any, str] | None, limit: int, docs: bool
) -> tuple[list[CouchDBAnswer], bool]:
    """Rows of one segment after ``after`` (exclusive), with their ``docs`` or not;
    True when the segment ended."""
    seg = chosen.segments[segment]
    start, end = (seg.high, seg.low) if chosen.descending else (seg.low, seg.high)
    try:
        return await db.page(
            chosen.index.design,
            VIEW,
            after=after,
            limit=limit,
            startkey=start,
            endkey=end,
            include_docs=docs or None,
            conflicts=docs or None,
            descending=chosen.descending or None,
        )
    except BadRequest as exc:  # a lower bound above the upper one (in CouchDB's collation)
        if exc.error == "query_parse_error" and "No rows can match" in str(exc.reason):
            return [], True
        raise
