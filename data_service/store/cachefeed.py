"""The change feed that keeps the read cache fresh: one per process.

It starts at ``since=now`` and long-polls from the last seq it got, telling the cache
of every changed id (``Cache.changed``). Each answer reports every change made before
it was asked for, so each one applied renews the cache's lease to the time it was asked
for plus ``BOUND``: **a change is never served from memory ``BOUND`` seconds after it
was made, whatever the feed is stuck on** (while the feed is healthy, its latency:
milliseconds, plus up to ``GATHER`` while changes keep coming).

A long poll that has not answered ``POLL + GRACE`` seconds after it was asked for (a
server that ignores ``timeout``, like pouchdb-server when nothing changed, or one that
never answers) is confirmed by a plain request from the same seq, which must answer
within ``CONFIRM`` seconds; a long poll that fails is confirmed the same way. When the
confirming request fails too, the cache is bypassed (nothing served, nothing stored;
one warning until the feed is back), flushed, and the feed starts over from ``now``,
retrying with a growing pause until CouchDB answers. ``BOUND`` is ``POLL + GRACE +
CONFIRM``, so the lease has run out by the time the confirming request gives up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from ..cache import Cache
from ..couchdb import CouchDBError, Database, Timeout
from ..vocabulary import CouchDBAnswer

log = logging.getLogger("data_service.cache")

POLL = 1.0  # seconds a long poll waits for a change (an idle CouchDB answers this often)
GRACE = 1.0  # seconds past POLL before a long poll's silence is checked
CONFIRM = 3.0  # seconds the checking (normal) request may take
BOUND = POLL + GRACE + CONFIRM  # seconds entries are served after the feed's last answer was asked for
GATHER = 0.01  # seconds the feed waits after an answer with changes, so a busy database's changes come in batches
PAUSES = (0.1, 0.25, 0.5, 1.0, 2.0)  # between attempts to start over, the last repeated
FAILURES = (CouchDBError, OSError, TimeoutError)


class CacheFeed:
    def __init__(self, db: Database, cache: Cache) -> None:
        self.db, self.cache = db, cache
        self.seq: str | int | None = None
        self.asked = cache.clock()  # when the last answer applied was asked for
        self.changes_seen = 0
        self.down = False  # bypassed since a request failed (warned once), until the feed starts again

    @property
    def age(self) -> float:
        """Seconds since the last answer applied was asked for (the lag metric): how old
        the cache's knowledge of the database is; entries are served while it is below
        ``BOUND``."""
        return self.cache.clock() - self.asked

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
        for attempt in itertools.count():
            asked = self.cache.clock()
            try:
                answer = await self.db.changes(since="now", feed="normal", limit=1, deadline=CONFIRM)
                break
            except FAILURES as exc:
                self._lost(f"cannot start ({exc})")
                await asyncio.sleep(PAUSES[min(attempt, len(PAUSES) - 1)])
        self.seq = answer.get("last_seq")
        self._heard(asked)
        self.down = False
        log.info("cache feed: live")

    async def _follow(self) -> None:
        """Long-poll from the last seq; return when the feed cannot go on from it."""
        while True:
            asked = self.cache.clock()
            try:
                answer = await self.db.changes(since=self.seq, feed="longpoll", timeout=POLL, deadline=POLL + GRACE)
            except FAILURES as exc:  # silent past its deadline, or failed: is CouchDB there?
                if not isinstance(exc, Timeout):
                    await asyncio.sleep(PAUSES[0])  # a long poll refused at once must not become a busy loop
                asked = self.cache.clock()
                try:
                    answer = await self.db.changes(since=self.seq, feed="normal", deadline=CONFIRM)
                except FAILURES as exc:  # down, stuck, or the seq refused (a 400)
                    self._lost(str(exc))
                    return
            self.apply(answer, asked)
            if answer.get("results"):  # under load: one poll per batch, not one per write
                await asyncio.sleep(GATHER)

    def apply(self, answer: CouchDBAnswer, asked: float) -> None:
        """An answer to a request made at ``asked`` (``Cache.clock``)."""
        for change in answer.get("results", []):
            revs = change.get("changes") or [{}]
            self.cache.changed(change["id"], None if change.get("deleted") else revs[0].get("rev"))
            self.changes_seen += 1
        if answer.get("last_seq") is not None:
            self.seq = answer["last_seq"]
        self._heard(asked)

    def _heard(self, asked: float) -> None:
        self.asked = max(self.asked, asked)
        self.cache.resume(asked + BOUND)

    def _lost(self, reason: str) -> None:
        """Bypass the cache; warn once until the feed is back."""
        self.cache.bypass()
        if not self.down:
            log.warning("cache feed: %s; cache bypassed until CouchDB answers the feed", reason)
        self.down = True
