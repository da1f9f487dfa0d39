"""What CouchDB holds for a document: its winner, its other live leaves, and the
deleted leaves above the winner — the trace a member's rollback leaves
(``docs/consistency.md`` §3). Every read of a model document starts here; the
lifecycle then decides what it is (``Lifecycle.open``, ``Lifecycle.removed``).

On CouchDB a read by id asks for ``conflicts`` and ``deleted_conflicts`` (no extra
request), ``_bulk_get`` without a revision gives every leaf, and only deleted leaves
above the winner (rare: a race's withdrawal, or tampering) are fetched again with
their history. The dev server has neither: it is read with ``open_revs=all``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from ..couchdb import Database, NotFound, Unreadable
from ..envelope import unreadable
from ..revisions import Leaves, generation, sorted_leaves
from ..vocabulary import Stored


@dataclass(frozen=True)
class Held:
    """What CouchDB holds for one id: the live winner as read (None: no live leaf), the
    other live leaves' revisions, the deleted leaves of a higher generation than the
    winner (bodies with ``_revisions``), and, with no live leaf, the winning deleted
    leaf's revision (a create on this id continues its branch; None: never existed)."""

    id: str
    doc: Stored | None
    conflicts: tuple[str, ...] = ()
    above: tuple[Stored, ...] = ()
    tombstone: str | None = None

    @property
    def settled(self) -> bool:
        """Nothing for the reconciler: one live leaf, nothing deleted above it."""
        return not self.conflicts and not self.above


class Reads:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _couchdb(self) -> bool:
        return (await self.db.couch.server_info()).supports_deleted_conflicts

    async def one(self, docid: str) -> Held:
        """One document by id (a quorum read)."""
        if not await self._couchdb():
            return (await self.many([docid]))[docid]
        try:
            doc = await self.db.get(docid, conflicts=True, deleted_conflicts=True)
        except NotFound:
            return Held(docid, None)
        except Unreadable:
            return Held(docid, unreadable(docid))
        level = generation(doc["_rev"]) or 0
        above = [rev for rev in doc.get("_deleted_conflicts", ()) if (generation(rev) or 0) > level]
        return Held(docid, doc, tuple(doc.get("_conflicts", ())), await self._history(docid, above) if above else ())

    async def many(self, ids: Iterable[str], *, every_copy: bool = False) -> dict[str, Held]:
        """Documents by id, each as ``one`` gives it (``every_copy``: as ``leaves``)."""
        found = await self.leaves(ids, every_copy=every_copy)
        return {docid: _held(docid, leaves) for docid, leaves in found.items()}

    async def leaves(self, ids: Iterable[str], *, every_copy: bool = False) -> dict[str, Leaves]:
        """Every leaf of each document, deleted ones above the winner with their history;
        ``every_copy``: the union of every copy's leaves (``r`` = n on a cluster), not a
        quorum's."""
        ids = list(dict.fromkeys(ids))
        r = await self.db.copies() if every_copy else None
        if not ids:
            return {}
        if await self._couchdb():
            try:
                found = await self._bulk(ids, r)
            except Unreadable:  # a document nested too deeply for the parser: read them one by one
                found = dict(zip(ids, await asyncio.gather(*(self._open(i, r) for i in ids)), strict=True))
        else:
            found = dict(zip(ids, await asyncio.gather(*(self._open(i, r) for i in ids)), strict=True))
        return {docid: await self._with_history(docid, leaves) for docid, leaves in found.items()}

    async def above(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` (at most 100: CouchDB then looks them up by id) may have a
        deleted leaf above the live winner: those with more than one leaf in the change
        feed (``style=all_docs``). For scans, and for pages on the dev server, whose map
        functions cannot see deleted leaves."""
        if not ids:
            return set()
        answer = await self.db.changes(doc_ids=ids, style="all_docs")
        found = set()
        for change in answer.get("results", ()):
            revs = [generation(c.get("rev")) or 0 for c in change.get("changes", ())]
            if not change.get("deleted") and len(revs) > 1:
                found.add(change["id"])  # more than one leaf: read it whole (its winner decides)
        return found

    async def _bulk(self, ids: list[str], r: int | None) -> dict[str, Leaves]:
        results = await self.db.bulk_get([{"id": docid} for docid in ids], r=r)
        found: dict[str, list[Stored]] = {docid: [] for docid in ids}
        for result in results:
            found.setdefault(result["id"], []).extend(
                entry["ok"] for entry in result.get("docs", ()) if isinstance(entry.get("ok"), dict)
            )
        return {docid: sorted_leaves(leaves) for docid, leaves in found.items()}

    async def _open(self, docid: str, r: int | None) -> Leaves:
        try:
            answer = await self.db.open_revs(docid, r=r)
        except NotFound:
            return sorted_leaves(())
        except Unreadable:
            return Leaves(unreadable(docid), (), ())
        return sorted_leaves(entry["ok"] for entry in answer if isinstance(entry.get("ok"), dict))

    async def _with_history(self, docid: str, leaves: Leaves) -> Leaves:
        above = leaves.above()
        if not above or all("_revisions" in leaf for leaf in above):
            return leaves
        fetched = {leaf["_rev"]: leaf for leaf in await self._history(docid, [leaf["_rev"] for leaf in above])}
        deleted = tuple(fetched.get(leaf["_rev"], leaf) for leaf in leaves.deleted)
        return Leaves(leaves.winner, leaves.conflicts, deleted)

    async def _history(self, docid: str, revs: list[str]) -> tuple[Stored, ...]:
        """The bodies of leaves ``revs`` with their ``_revisions``, asked of every copy: a
        leaf one read found may not have reached the copies a quorum read asks (a race's
        withdrawal still being replicated), and a leaf without its history cannot be told
        from a tombstone moved onto another branch (issue 21: a false integrity violation)."""
        answer = await self.db.open_revs(docid, revs, history=True, r=await self.db.copies())
        return tuple(entry["ok"] for entry in answer if isinstance(entry.get("ok"), dict))


def _held(docid: str, leaves: Leaves) -> Held:
    winner = leaves.winner
    if winner is not None and leaves.conflicts:
        winner = {**winner, "_conflicts": [leaf["_rev"] for leaf in leaves.conflicts]}
    return Held(docid, winner, tuple(leaf["_rev"] for leaf in leaves.conflicts), leaves.above(), leaves.tombstone)
