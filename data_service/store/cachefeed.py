"""The change feed that keeps the read cache fresh: one per process.

It starts at ``since=now`` and long-polls from the last seq it got, telling the cache
of every changed id (``Cache.changed``: the entry goes unless it holds that revision).
A write made elsewhere is therefore served from memory at most until the feed's next
answer reaches this process: the staleness bound is the feed's latency (milliseconds
on a healthy CouchDB), plus up to ``GATHER`` while changes keep coming (after an answer
with changes the feed waits that long before polling again, so a database taking
hundreds of writes a second costs each worker about half the feed requests, not one
per write). A feed that hangs is cut off after ``POLL + 2 s`` by the client's
timeout, so no entry is served longer than that after a change.

When a feed request fails the cache is bypassed at once (nothing served, nothing
stored) and the feed retries from its last seq; when that succeeds, the changes it
missed evict their entries and the cache is live again. When it cannot resume (the
retry fails, or CouchDB refuses the seq) the cache is flushed and the feed starts
over from ``now``, retrying with a growing pause until CouchDB answers.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..cache import Cache
from ..couchdb import CouchDBError, Database

log = logging.getLogger("data_service.cache")

POLL = 10.0  # seconds a long poll waits for a change (an idle feed answers this often)
GATHER = 0.01  # seconds the feed waits after an answer with changes, so a busy database's changes come in batches
PAUSES = (0.1, 0.25, 0.5, 1.0, 2.0)  # between attempts to start over, the last repeated


class CacheFeed:
    def __init__(self, db: Database, cache: Cache, poll: float = POLL, gather: float = GATHER) -> None:
        self.db, self.cache, self.poll, self.gather = db, cache, poll, gather
        self.seq: str | int | None = None
        self.heard = time.monotonic()  # when CouchDB last answered the feed
        self.changes_seen = 0

    @property
    def age(self) -> float:
        """Seconds since the feed last heard from CouchDB (the lag metric): below
        ``poll`` plus a round trip while it is healthy."""
        return time.monotonic() - self.heard

    async def run(self) -> None:
        """Follow the database until cancelled."""
        while True:
            await self._start()
            await self._follow()

    async def _start(self) -> None:
        """Flushed, from ``now``: the position is taken before the cache goes live, so
        every change after it reaches the cache."""
        self.cache.bypass()
        self.cache.flush()
        for attempt in range(1 << 62):
            try:
                answer = await self.db.changes(since="now", feed="normal", limit=1)
                break
            except (CouchDBError, OSError, TimeoutError) as exc:
                if attempt == 0:
                    log.warning("cache feed: cannot start (%s); cache bypassed", exc)
                await asyncio.sleep(PAUSES[min(attempt, len(PAUSES) - 1)])
        self.seq = answer.get("last_seq")
        self.heard = time.monotonic()
        self.cache.resume()
        log.info("cache feed: live")

    async def _follow(self) -> None:
        """Long-poll from the last seq; return when the feed cannot resume."""
        while True:
            try:
                answer = await self.db.changes(since=self.seq, feed="longpoll", timeout=self.poll)
            except (CouchDBError, OSError, TimeoutError) as exc:
                self.cache.bypass()
                log.warning("cache feed: %s; cache bypassed, resuming from the last seq", exc)
                try:
                    answer = await self.db.changes(since=self.seq, feed="normal")
                except (CouchDBError, OSError, TimeoutError) as again:  # refused (a 400) or down
                    log.warning("cache feed: cannot resume (%s); cache flushed", again)
                    return
            self.apply(answer)
            if answer.get("results"):  # under load: one poll per batch, not one per write
                await asyncio.sleep(self.gather)

    def apply(self, answer: dict) -> None:
        for change in answer.get("results", []):
            revs = change.get("changes") or [{}]
            self.cache.changed(change["id"], None if change.get("deleted") else revs[0].get("rev"))
            self.changes_seen += 1
        if answer.get("last_seq") is not None:
            self.seq = answer["last_seq"]
        self.heard = time.monotonic()
        self.cache.resume()
