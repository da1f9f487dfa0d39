"""A prefetching pool of CouchDB-generated document ids (``GET /_uuids``)."""

from __future__ import annotations

import asyncio
import collections

from .database import Server

MAX_BATCH = 1000  # CouchDB's default uuids/max_count


class IdPool:
    """Hands out ids from ``_uuids`` batches and refills in the background when
    fewer than ``low_water`` remain. Concurrent takers share one refill, which
    asks for enough ids for all of them; a cancelled taker never cancels it."""

    def __init__(self, couch: Server, batch: int = 100, low_water: int = 20) -> None:
        self._couch = couch
        self._batch = batch
        self._low_water = low_water
        self._ids: collections.deque[str] = collections.deque()
        self._refill: asyncio.Task | None = None
        self._waiting = 0

    def __len__(self) -> int:
        return len(self._ids)

    async def take(self) -> str:
        self._waiting += 1
        try:
            while not self._ids:
                await asyncio.shield(self._start_refill())
        finally:
            self._waiting -= 1
        docid = self._ids.popleft()
        if len(self._ids) < self._low_water:
            self._start_refill()
        return docid

    def _start_refill(self) -> asyncio.Task:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.ensure_future(self._fill())
            self._refill.add_done_callback(_retrieve_exception)
        return self._refill

    async def _fill(self) -> None:
        count = min(MAX_BATCH, max(self._batch, self._waiting))
        self._ids.extend(await self._couch.uuids(count))


def _retrieve_exception(task: asyncio.Task) -> None:
    # A failed background refill is reported to the takers that await it;
    # retrieving it here keeps asyncio from logging "never retrieved".
    if not task.cancelled():
        task.exception()
