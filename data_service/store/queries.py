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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..canonical import digest
from ..conflicts.reconciler import Reconciler
from ..couchdb import BadRequest, Database
from ..design import VIEW
from ..envelope import is_deleted, row_doc
from ..lifecycle import Lifecycle
from ..models import ModelType
from ..protection import IntegrityViolation, Keyring, KeyUnavailable
from ..query import Plan, Query, QueryError, plan
from .results import Page


async def run_query(
    db: Database,
    lifecycle: Lifecycle,
    reconciler: Reconciler,
    verify: Callable[[dict], None],
    model: ModelType,
    query: Query,
    cursor_ttl: float,
    clock: Callable[[], float] = time.time,
) -> Page:
    """The page of ``query``. ``verify`` checks (and counts) each document's
    signature; cursors expire ``cursor_ttl`` seconds after they were issued."""
    chosen = plan(model, query, lifecycle.lookup_values)
    binding = _binding(lifecycle.keys, model, query, chosen)
    segment, after = 0, None
    if query.cursor is not None:
        segment, after = _position(lifecycle.keys, query.cursor, binding, chosen, clock())
    found: list[tuple[dict, int, tuple]] = []  # (representation, segment, (key, id))
    omitted: list[dict] = []
    while segment < len(chosen.segments) and len(found) <= query.limit:
        rows, ended = await _rows(db, chosen, segment, after, query.limit + 1 - len(found))
        for row in rows:
            after = (row["key"], row["id"])
            doc = row_doc(row)
            if doc is None or not chosen.accepts(row["key"]):
                continue
            if doc.get("_conflicts"):  # reconciled here; skipped if that moved it in the index
                doc = await reconciler.resolve(model, doc)
                if doc is None or chosen.index.key(doc) != row["key"]:
                    continue
            try:
                verify(doc)  # first: tampering that hides a document is still named
                if is_deleted(doc) and not query.include_deleted:
                    continue
                found.append((lifecycle.representation(model, doc), segment, after))
            except (IntegrityViolation, KeyUnavailable) as exc:
                omitted.append({"id": doc["_id"], "code": exc.code})
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


async def _rows(db: Database, chosen: Plan, segment: int, after: tuple | None, limit: int) -> tuple[list[dict], bool]:
    """Rows of one segment after ``after`` (exclusive); True when the segment ended."""
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
            include_docs=True,
            conflicts=True,
            descending=chosen.descending or None,
        )
    except BadRequest as exc:  # a lower bound above the upper one (in CouchDB's collation)
        if exc.error == "query_parse_error" and "No rows can match" in str(exc.reason):
            return [], True
        raise
