"""Collection queries: a page of documents from the index view serving a query
(planned by ``query``), keyset-paged across the plan's segments."""

from __future__ import annotations

from collections.abc import Callable

from ..canonical import digest
from ..conflicts.reconciler import Reconciler
from ..couchdb import BadRequest, Database
from ..design import VIEW
from ..envelope import is_deleted
from ..lifecycle import Lifecycle
from ..models import ModelType
from ..protection import IntegrityViolation, KeyUnavailable
from ..query import Plan, Query, QueryError, plan
from .results import Page


async def run_query(
    db: Database,
    lifecycle: Lifecycle,
    reconciler: Reconciler,
    verify: Callable[[dict], None],
    model: ModelType,
    query: Query,
) -> Page:
    """The page of ``query``; the cursor holds the segment, key and id of the last item
    returned. ``verify`` checks (and counts) each document's signature."""
    chosen = plan(model, query, lifecycle.lookup_values)
    bound_to = digest(query.signature(), 32)
    segment, after = 0, None
    if query.cursor is not None:
        try:
            cursor = lifecycle.keys.unseal(query.cursor)
            segment, after = int(cursor["s"]), (cursor["k"], cursor["d"])
            valid = cursor["q"] == bound_to
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise QueryError("cursor: not a cursor of this query (forged, edited or for other filters)")
    found: list[tuple[dict, int, tuple]] = []  # (representation, segment, (key, id))
    omitted: list[dict] = []
    while segment < len(chosen.segments) and len(found) <= query.limit:
        rows, ended = await _rows(db, chosen, segment, after, query.limit + 1 - len(found))
        for row in rows:
            after = (row["key"], row["id"])
            doc = row.get("doc")
            if doc is None or not chosen.accepts(row["key"]):
                continue
            if doc.get("_conflicts"):  # reconciled here; skipped if that moved it in the index
                doc = await reconciler.resolve(model, doc)
                if doc is None or chosen.index.key(doc) != row["key"]:
                    continue
            if is_deleted(doc) and not query.include_deleted:
                continue
            try:
                verify(doc)
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
        next_cursor = lifecycle.keys.seal({"q": bound_to, "s": last_segment, "k": key, "d": docid})
    return Page([item for item, _, _ in found], next_cursor, omitted)


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
