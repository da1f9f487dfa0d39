"""Writing documents to CouchDB: one writer per document per process, and writes
CouchDB stores below its write quorum (202).

On a cluster CouchDB answers 202 when a write reached fewer copies than its write
quorum. Either nodes are down — the write stands, and the caller is told — or another
sidecar's write from the same revision reached the other copies, leaving two live
leaves: both callers would think they won and a merge would drop one acknowledged
write. Then ours counts as lost: what it overwrote is put back on top of it (that
content is older than any concurrent write, so every merge prefers the others, and if
every racer undoes its own the document is simply what it was) and the write fails as
a ``Conflict``, answered like any stale write. The content put back is re-signed by the
lifecycle for the generation it lands on, content and ``meta`` unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from ..couchdb import Conflict, CouchDBError, Database, WriteResult
from ..envelope import rev_key
from ..lifecycle import Lifecycle
from .results import Stats

log = logging.getLogger("data_service.store")


class Writes:
    def __init__(self, db: Database, stats: Stats, lifecycle: Lifecycle) -> None:
        self.db, self.stats, self.lifecycle = db, stats, lifecycle
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def serialized(self, docid: str) -> AsyncIterator[None]:
        """Writes to one document from this process, one at a time: they would conflict
        in CouchDB anyway, and on a cluster two concurrent writes from one revision can
        both be stored — never racing them avoids it."""
        lock, users = self._locks.setdefault(docid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[docid]

    async def put(self, doc: dict, parent: dict | None) -> WriteResult:
        """PUT ``doc`` over ``parent`` (None: a new document); Conflict when it lost.
        The client retries a PUT whose answer was lost (timeout, dropped connection); when
        the first attempt had landed, the retry answers 409 — then the document holds our
        signature, and the write succeeded."""
        try:
            result = await self.db.put(doc)
        except Conflict:
            current = await self.db.get(doc["_id"])
            if current.get("sig") != doc.get("sig"):
                raise
            return WriteResult(doc["_id"], current["_rev"])
        if result.accepted and await self._lost_race(doc["_id"], result.rev):
            await self._undo(doc, result.rev, parent)
            raise Conflict("PUT", doc["_id"], 409, "conflict", "a concurrent write reached the write quorum first")
        return result

    async def delete(self, docid: str, rev: str) -> WriteResult:
        """Delete ``docid`` at ``rev``; Conflict when a concurrent write won (a tombstone
        is no live leaf: nothing to undo)."""
        result = await self.db.delete(docid, rev)
        if result.accepted and await self._lost_race(docid, result.rev):
            raise Conflict("DELETE", docid, 409, "conflict", "a concurrent write reached the write quorum first")
        return result

    async def _lost_race(self, docid: str, rev: str) -> bool:
        """After a 202 for the write that made ``rev``: does another live leaf as new exist?"""
        self.stats.writes_below_quorum += 1
        self.stats.last_below_quorum = time.monotonic()
        generation = rev_key(rev)[0]
        rivals = [  # every copy's leaves: with fewer, the copies holding the rival may not answer
            leaf["ok"]["_rev"]
            for leaf in await self.db.open_revs(docid, r=await self.db.copies())
            if isinstance(leaf.get("ok"), dict)
            and not leaf["ok"].get("_deleted")
            and leaf["ok"]["_rev"] != rev
            and rev_key(leaf["ok"]["_rev"])[0] >= generation
        ]
        if rivals:
            self.stats.quorum_races_lost += 1
            log.warning("document %s: a write stored below quorum raced revision %s; undone", docid, rivals[0])
        return bool(rivals)

    async def _undo(self, doc: dict, rev: str, parent: dict | None) -> None:
        """Best effort: a leaf left as it is gets merged like any conflict."""
        docid = doc["_id"]
        try:
            if parent is None:
                await self.db.delete(docid, rev)
            else:
                await self.db.put(self.lifecycle.restored(parent, rev, doc))
        except CouchDBError as exc:
            log.warning("document %s: could not undo revision %s: %s", docid, rev, exc)
