"""The read cache (pure, no I/O): verified documents' response bytes by id, LRU by bytes.

Freshness rests on two counters, never on time:

* ``Stamps``: per-id-hash write counters, one row per worker in memory all workers
  share (``Stamps.shared``, an anonymous shared mmap made before forking). Every write
  through any worker bumps the writer's own row (one writer per row: no locks; an
  aligned 8-byte store is atomic on the platforms we run on); every change this
  worker's feed reports bumps a private table (the other workers' feeds report it to
  them). An id's stamp is the sum. An entry remembers the stamp it was read under and
  is served only while the stamp is unchanged, so a write acknowledged by one worker
  is never followed by an older version from another.
* ``Ticket``: taken *before* reading CouchDB (stamp + the cache's epoch). ``put``
  refuses an entry whose stamp moved or whose epoch changed since (a write or a
  change, a flush, the feed going down or up), so a read that started before a write
  can never insert the older version after it.

While the change feed is not live the cache is bypassed: ``get`` answers nothing
and ``put`` stores nothing.
"""

from __future__ import annotations

import mmap
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

SLOTS = 1 << 16  # per-id-hash counters per worker: 512 KiB per worker
REPORTED_KEPT = 4096  # feed-reported revisions remembered for writes whose answer comes after the report
ENTRY_OVERHEAD = 420  # bytes an entry costs besides its bodies, revision and ETag (objects, its id, LRU slot; measured)


class Stamps:
    """Per-id-hash write counters: ``workers`` rows of ``SLOTS`` unsigned 64-bit ints."""

    def __init__(self, memory: mmap.mmap | bytearray, workers: int, row: int = 0) -> None:
        self._memory = memory
        self._table = memoryview(memory).cast("Q")
        self.workers, self.row = workers, row

    @classmethod
    def private(cls) -> Stamps:
        """One process: a plain table."""
        return cls(bytearray(8 * SLOTS), 1)

    @classmethod
    def shared(cls, workers: int) -> Stamps:
        """Shared with the processes forked after this call (MAP_SHARED, anonymous);
        each worker calls ``as_worker`` with its index."""
        return cls(mmap.mmap(-1, 8 * SLOTS * workers), workers)

    def as_worker(self, row: int) -> Stamps:
        return Stamps(self._memory, self.workers, row)

    @staticmethod
    def slot(docid: str) -> int:
        return zlib.crc32(docid.encode()) & (SLOTS - 1)

    def read(self, docid: str) -> int:
        slot, table = self.slot(docid), self._table
        if self.workers == 1:
            return table[slot]
        return sum(table[row * SLOTS + slot] for row in range(self.workers))

    def bump(self, docid: str) -> None:
        index = self.row * SLOTS + self.slot(docid)
        self._table[index] = (self._table[index] + 1) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class Ticket:
    epoch: int
    stamp: int


@dataclass(frozen=True, slots=True)
class Entry:
    """A verified document ready to send: its type, revision, ETag and body bytes, and
    the stored envelope it was made from (JSON), so a write naming this revision needs
    no read of CouchDB first."""

    type: str
    rev: str
    etag: str
    body: bytes
    stored: bytes = b""
    stamp: int = 0

    @property
    def size(self) -> int:
        return len(self.body) + len(self.stored) + len(self.rev) + len(self.etag) + ENTRY_OVERHEAD


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0  # entries dropped for room
    invalidations: int = 0  # entries dropped because the document changed
    flushes: int = 0
    parents: int = 0  # writes naming a cached revision, made without reading CouchDB first


@dataclass
class Cache:
    """``capacity`` bytes of entries, least recently used dropped first; 0 disables it."""

    capacity: int
    stamps: Stamps = field(default_factory=Stamps.private)
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._reported = Stamps.private()  # changes this worker's feed reported
        self._last_reported: OrderedDict[str, str] = OrderedDict()  # id → the revision it reported last
        self.bytes = 0
        self.epoch = 0
        self.live = False  # the change feed is following the database: entries may be served

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self._entries)

    def stamp(self, docid: str) -> int:
        return self.stamps.read(docid) + self._reported.read(docid)

    def ticket(self, docid: str) -> Ticket:
        """Take before reading (or writing) ``docid`` in CouchDB."""
        return Ticket(self.epoch, self.stamp(docid))

    def get(self, docid: str, type_name: str) -> Entry | None:
        """The entry if it is still current (counted as a hit), else None (a miss)."""
        entry = self.peek(docid, type_name)
        if entry is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(docid)
        self.stats.hits += 1
        return entry

    def peek(self, docid: str, type_name: str) -> Entry | None:
        """The entry if it is still current, not counted (a write's parent)."""
        entry = self._entries.get(docid) if self.live else None
        if entry is None or entry.type != type_name:
            return None
        if entry.stamp != self.stamp(docid):
            self._drop(docid)
            self.stats.invalidations += 1
            return None
        return entry

    def put(self, docid: str, ticket: Ticket, entry: Entry, own_writes: int = 0) -> bool:
        """Store ``entry`` read (or written) under ``ticket``, unless anything changed
        ``docid`` since: ``own_writes`` is how many bumps the caller's write made itself
        (and one more is fine if it was the feed reporting the very revision stored)."""
        if not (self.enabled and self.live and ticket.epoch == self.epoch):
            return False
        stamp, expected = self.stamp(docid), ticket.stamp + own_writes
        if stamp == expected + 1 and self._last_reported.get(docid) == entry.rev:
            expected = stamp  # the one change since is the feed reporting this very revision
        if stamp != expected or entry.size > self.capacity:
            return False
        self._drop(docid)
        # copied to their exact size: orjson's bytes keep a 4 KiB buffer whatever their length
        body, stored = memoryview(entry.body).tobytes(), memoryview(entry.stored).tobytes()
        self._entries[docid] = Entry(entry.type, entry.rev, entry.etag, body, stored, stamp)
        self.bytes += self._entries[docid].size
        while self.bytes > self.capacity:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.stats.evictions += 1
        return True

    def written(self, docid: str, rev: str | None = None) -> None:
        """``docid`` was written through this worker (``rev``; None: it may have been):
        every worker's entry for it goes."""
        self.stamps.bump(docid)
        self._forget(docid, rev)

    def changed(self, docid: str, rev: str | None = None) -> None:
        """This worker's feed reports ``docid`` at ``rev`` (None: deleted): the entry
        goes unless it holds that revision already."""
        entry = self._entries.get(docid)
        if entry is not None and entry.rev == rev:
            return
        self._reported.bump(docid)
        if rev is not None:
            self._last_reported[docid] = rev
            self._last_reported.move_to_end(docid)
            if len(self._last_reported) > REPORTED_KEPT:
                self._last_reported.popitem(last=False)
        self._forget(docid, rev)

    def _forget(self, docid: str, rev: str | None) -> None:
        entry = self._entries.get(docid)
        if entry is not None and entry.rev != rev:
            self._drop(docid)
            self.stats.invalidations += 1

    def flush(self) -> None:
        """Forget every entry; reads in flight cannot store theirs (new epoch)."""
        self._entries.clear()
        self.bytes = 0
        self.epoch += 1
        self.stats.flushes += 1

    def bypass(self) -> None:
        """The feed stopped: serve and store nothing until ``resume``."""
        self.live = False
        self.epoch += 1

    def resume(self) -> None:
        """The feed follows the database again (from where it was, or from now after a flush)."""
        if not self.live:
            self.live = True
            self.epoch += 1

    def _drop(self, docid: str) -> None:
        entry = self._entries.pop(docid, None)
        if entry is not None:
            self.bytes -= entry.size
