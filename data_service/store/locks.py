"""One writer per document in a sidecar, across its workers.

Two writes to one document would conflict in CouchDB anyway; on a cluster two writes
from one revision can both be stored below quorum (``docs/consistency.md``). So a
sidecar never races itself: within a process an ``asyncio.Lock`` per document; across
the workers of ``--workers`` an ``fcntl`` record lock on one byte of a file the parent
made before forking, the byte chosen by a hash of the id (two ids sharing a byte only
wait for each other). A record lock is released by the kernel when its process dies,
so a killed worker never leaves a document locked. Record locks belong to the process,
not to a task: the first task of this process to hold an id's byte takes the lock and
the last one to leave releases it; other processes' tasks poll without blocking the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import zlib
from collections.abc import AsyncIterator, Iterable

SLOTS = 1 << 20  # bytes of the lock file the ids hash onto
POLL = (0.0005, 0.001, 0.002, 0.005, 0.01)  # seconds between tries of a byte another worker holds, the last repeated


class DocLocks:
    """``held(ids)``: exclusive access to documents for this sidecar. ``path``: the lock
    file shared by the workers (None: one process, no file)."""

    def __init__(self, path: str | None = None) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) if path else None
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._bytes: dict[int, int] = {}  # slot -> tasks of this process holding it

    @contextlib.asynccontextmanager
    async def held(self, ids: Iterable[str]) -> AsyncIterator[None]:
        """Hold every id of ``ids`` (in sorted order, so two holders never deadlock)."""
        async with contextlib.AsyncExitStack() as stack:
            for docid in sorted(set(ids)):
                await stack.enter_async_context(self._one(docid))
            yield

    @contextlib.asynccontextmanager
    async def _one(self, docid: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(docid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                if self._fd is None:
                    yield
                else:
                    slot = zlib.crc32(docid.encode()) % SLOTS
                    await self._take(slot)
                    try:
                        yield
                    finally:
                        self._give(slot)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[docid]

    async def _take(self, slot: int) -> None:
        assert self._fd is not None
        if self._bytes.get(slot):
            self._bytes[slot] += 1
            return
        for attempt in range(1 << 62):
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
                break
            except OSError:  # another worker holds it
                await asyncio.sleep(POLL[min(attempt, len(POLL) - 1)])
        self._bytes[slot] = self._bytes.get(slot, 0) + 1

    def _give(self, slot: int) -> None:
        assert self._fd is not None
        self._bytes[slot] -= 1
        if not self._bytes[slot]:
            del self._bytes[slot]
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, slot)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
