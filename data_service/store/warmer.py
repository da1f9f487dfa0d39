"""Indexes kept warm (``serve --warm-interval``): CouchDB builds a view's index when the view
is queried, so the first query after a bulk load waits for every document written since
the index was last current (22.6 s after 100,000 documents, issue 25). The warmer, a
background task of the worker that runs the sweeper, brings each design document's index
up to date every few seconds while the database changes, so a query waits only for the
writes of the last seconds. It warms what callers' queries read: the types' indexes
(``design.query_designs``); the conflicts and Idempotency-Key views are read by the
sweeper and the expiry job, in the background, on their own schedules.

Its cost to CouchDB is bounded: a pass runs only when the database's changes feed has a change
since the last complete pass began; it asks for one design document's index at a time (a query
with ``limit=0``, answered once that index is current: never more than one request in
flight, and CouchDB builds one index at a time for it); and the next pass starts
``interval`` seconds after one ends. The indexing itself is work CouchDB would do anyway,
at the next query; the warmer moves it to while writes still arrive."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TextIO

from ..background import every
from ..couchdb import CouchDBError, Database, Timeout
from ..design import VIEW
from ..progress import Progress

log = logging.getLogger("data_service")
TIMEOUT = 600.0  # seconds one index may take to catch up before the pass gives up until the next
POLL = 1.0  # seconds between looks at an index's pending updates while it builds (warm_up)


class Warmer:
    """``warm`` brings each of ``designs`` (design document names, in order) up to date."""

    def __init__(self, db: Database, designs: list[str], timeout: float = TIMEOUT) -> None:
        self.db, self.designs, self.timeout = db, designs, timeout
        # the update_seq the last complete pass started from. Asked whether anything changed
        # since, not compared: on a cluster each answer may come from other copies, so an
        # unchanged database's update_seq differs from one answer to the next
        self.seen: str | int | None = None

    async def warm(self) -> bool:
        """One pass, if the database changed since the last complete one; whether it ran.
        An index still building after ``timeout`` ends the pass (CouchDB goes on building
        it); the next pass starts over."""
        if self.seen is not None and not (await self.db.changes(since=self.seen, limit=1))["results"]:
            return False
        seq = (await self.db.info())["update_seq"]
        started = time.monotonic()
        for name in self.designs:
            try:
                await self.db.update_index(name, VIEW, timeout=self.timeout)
            except Timeout:
                log.info("index warmer: _design/%s still building after %.0f s", name, self.timeout)
                return True
        self.seen = seq
        log.debug("index warmer: %d indexes current in %.2f s", len(self.designs), time.monotonic() - started)
        return True


async def run_warmer(warmer: Warmer, interval: float) -> None:
    """The background task of ``serve``: a pass every ``interval`` seconds, until cancelled."""

    async def warm_indexes() -> None:
        await warmer.warm()

    await every(interval, warm_indexes)


async def warm_up(db: Database, names: list[str], out: TextIO, timeout: float | None = None) -> None:
    """Build the index of each of ``names`` now (``install``), one at a time, with its
    progress on ``out``: the updates the index has to catch up with, from its ``_info``
    (servers without it show only the time it took). One still building after
    ``timeout`` (default: the client's request timeout) is left to CouchDB."""
    for n, name in enumerate(names, 1):
        before = await _pending(db, name)
        progress = Progress(f"warm {n}/{len(names)} {name}", before or 0, out=out)
        build = asyncio.ensure_future(db.update_index(name, VIEW, timeout=timeout))
        while not build.done():
            await asyncio.wait([build], timeout=POLL)
            if before and not build.done() and (left := await _pending(db, name)) is not None:
                progress.advance(max(0, before - left - progress.done))
        try:
            build.result()
        except Timeout:
            out.write(f"warm {n}/{len(names)} {name}: still building; CouchDB finishes it in the background\n")
            continue
        progress.advance(max(0, (before or 0) - progress.done))
        progress.finish()


async def _pending(db: Database, name: str) -> int | None:
    """How many updates the index of ``_design/<name>`` lags behind the database (None:
    the server does not say)."""
    try:
        info = await db.design_info(name)
    except CouchDBError:
        return None
    index = info.get("view_index") if isinstance(info, dict) else None  # the dev server: a stub
    pending = index.get("updates_pending") if isinstance(index, dict) else None
    total = pending.get("total") if isinstance(pending, dict) else None
    return total if isinstance(total, int) else None
