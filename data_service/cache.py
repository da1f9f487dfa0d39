"""The read cache (pure, no I/O): verified documents' response bytes by id, LRU by bytes.

Freshness rests on two counters and one lease:

* ``WriteCounters``: per-id-hash write counters, one row per worker in memory all workers
  share (``WriteCounters.shared``, an anonymous shared mmap made before forking). Every write
  through any worker bumps the writer's own row (one writer per row: no locks; an
  aligned 8-byte store is atomic on the platforms we run on); every change this
  worker's feed reports bumps a private table (the other workers' feeds report it to
  them). An id's write count is the sum. An entry remembers the count it was read under and
  is served only while the count is unchanged, so a write acknowledged by one worker
  is never followed by an older version from another.
* ``Ticket``: taken *before* reading (or writing) CouchDB (write count + the cache's epoch).
  ``put`` refuses an entry whose write count moved or whose epoch changed since (a write
  through any worker, a change this worker's feed reported, a flush, the feed going
  down or up), so a read that started before a write can never store the older
  version after it. One exception, for a write's own entry only: when the one other
  change since its ticket is this worker's feed reporting the very revision written
  (the report may arrive before CouchDB's answer to the write), and that report came
  after the ticket (each report's write count is remembered to tell).
* Echoes: the feed reporting the revision an entry holds is expected once, after this
  worker's own write of it (the entry awaits that echo). Any other report of a held
  revision means the body stored at that revision may have been replaced (purged and
  re-inserted with another body), so the entry goes like on any change.

* Lease: the feed's every answer reports each change made before it was asked for, so
  ``resume(fresh_until)`` (the time it was asked for plus the feed's bound) says how
  long the entries may be served; a feed that stops answering stops the cache by
  itself at that time, whatever it is stuck on.

While the change feed is not live, or its lease has run out, the cache is bypassed:
``get`` answers nothing and ``put`` stores nothing (``serving``).
"""

from __future__ import annotations

import math
import mmap
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

SLOTS = 1 << 16  # per-id-hash counters per worker: 512 KiB per worker
REPORTED_KEPT = 4096  # feed reports remembered for writes whose answer comes after the report
ENTRY_OVERHEAD = 420  # bytes an entry costs besides its bodies, revision and ETag (objects, its id, LRU slot; measured)


class WriteCounters:
    """Per-id-hash write counters: ``workers`` rows of ``SLOTS`` unsigned 64-bit ints."""

    def __init__(self, memory: mmap.mmap | bytearray, workers: int, row: int = 0) -> None:
        self._memory = memory
        self._table = memoryview(memory).cast("Q")
        self.workers, self.row = workers, row

    @classmethod
    def private(cls) -> WriteCounters:
        """One process: a plain table."""
        return cls(bytearray(8 * SLOTS), 1)

    @classmethod
    def shared(cls, workers: int) -> WriteCounters:
        """Shared with the processes forked after this call (MAP_SHARED, anonymous);
        each worker calls ``as_worker`` with its index."""
        return cls(mmap.mmap(-1, 8 * SLOTS * workers), workers)

    def as_worker(self, row: int) -> WriteCounters:
        return WriteCounters(self._memory, self.workers, row)

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
    write_count: int


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
    write_count: int = 0

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
    counters: WriteCounters = field(default_factory=WriteCounters.private)
    stats: CacheStats = field(default_factory=CacheStats)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._reported = WriteCounters.private()  # changes this worker's feed reported
        self._reports: OrderedDict[str, tuple[str | None, int]] = (
            OrderedDict()
        )  # id → its last report, write count after
        self._echoes: set[str] = set()  # ids whose entry is this worker's own write, its report not yet come
        self.bytes = 0
        self.epoch = 0
        self.live = False  # the change feed is following the database
        self.fresh_until = -math.inf  # (``clock``) its lease: entries may be served until then

    @property
    def serving(self) -> bool:
        """The feed is live and its lease has not run out: entries may be served and stored."""
        return self.live and self.clock() < self.fresh_until

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self._entries)

    def write_count(self, docid: str) -> int:
        return self.counters.read(docid) + self._reported.read(docid)

    def ticket(self, docid: str) -> Ticket:
        """Take before reading (or writing) ``docid`` in CouchDB."""
        return Ticket(self.epoch, self.write_count(docid))

    def get(self, docid: str, type_name: str, fits: Callable[[Entry], bool] | None = None) -> Entry | None:
        """The entry if it is still current (counted as a hit), else None (a miss)."""
        entry = self.peek(docid, type_name, fits)
        if entry is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(docid)
        self.stats.hits += 1
        return entry

    def peek(self, docid: str, type_name: str, fits: Callable[[Entry], bool] | None = None) -> Entry | None:
        """The entry if it is still current, not counted (a write's parent). With ``fits``,
        an entry it refuses is not current either: it goes."""
        entry = self._entries.get(docid) if self.serving else None
        if entry is None or entry.type != type_name:
            return None
        if entry.write_count != self.write_count(docid) or (fits is not None and not fits(entry)):
            self._invalidate(docid)
            return None
        return entry

    def put(self, docid: str, ticket: Ticket, entry: Entry, own_writes: int = 0) -> bool:
        """Store ``entry`` read (or written) under ``ticket``, unless anything changed
        ``docid`` since: ``own_writes`` is how many bumps the caller's write made itself
        (and then one more is fine if it was this feed reporting the revision written)."""
        if not (self.enabled and self.serving and ticket.epoch == self.epoch):
            return False
        count, expected = self.write_count(docid), ticket.write_count + own_writes
        echoed = bool(own_writes) and self._reported_since(docid, entry.rev, ticket)
        if count != expected + echoed or entry.size > self.capacity:
            return False
        self._drop(docid)
        if own_writes and not echoed:
            self._echoes.add(docid)
        # copied to their exact size: orjson's bytes keep a 4 KiB buffer whatever their length
        body, stored = memoryview(entry.body).tobytes(), memoryview(entry.stored).tobytes()
        self._entries[docid] = Entry(entry.type, entry.rev, entry.etag, body, stored, count)
        self.bytes += self._entries[docid].size
        while self.bytes > self.capacity:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.stats.evictions += 1
        return True

    def _reported_since(self, docid: str, rev: str, ticket: Ticket) -> bool:
        """Whether this worker's feed reported ``docid`` at ``rev`` after ``ticket`` was taken."""
        report = self._reports.get(docid)
        return report is not None and report[0] == rev and report[1] > ticket.write_count

    def written(self, docid: str, rev: str | None = None) -> None:
        """``docid`` was written through this worker (at ``rev``; None: it may have
        been): every worker's entry for it goes."""
        self.counters.bump(docid)
        self._invalidate(docid)

    def changed(self, docid: str, rev: str | None = None) -> None:
        """This worker's feed reports ``docid`` at ``rev`` (None: deleted): the entry
        goes, unless it is this worker's own write of ``rev`` awaiting this report."""
        entry = self._entries.get(docid)
        if entry is not None and entry.rev == rev and docid in self._echoes:
            self._echoes.discard(docid)
            return
        self._reported.bump(docid)
        self._reports[docid] = (rev, self.write_count(docid))
        self._reports.move_to_end(docid)
        if len(self._reports) > REPORTED_KEPT:
            self._reports.popitem(last=False)
        self._invalidate(docid)

    def _invalidate(self, docid: str) -> None:
        if docid in self._entries:
            self._drop(docid)
            self.stats.invalidations += 1

    def flush(self) -> None:
        """Forget every entry; reads in flight cannot store theirs (new epoch)."""
        self._entries.clear()
        self._echoes.clear()
        self.bytes = 0
        self.epoch += 1
        self.stats.flushes += 1

    def bypass(self) -> None:
        """The feed stopped: serve and store nothing until ``resume``."""
        self.live = False
        self.epoch += 1
        self.fresh_until = -math.inf

    def resume(self, fresh_until: float = math.inf) -> None:
        """The feed follows the database (again: from where it was, or from now after a
        flush), and every change made before its answer was asked for is reported:
        entries may be served until ``fresh_until`` (``clock``) unless it moves on."""
        if not self.live:
            self.live = True
            self.epoch += 1
        self.fresh_until = max(self.fresh_until, fresh_until)

    def _drop(self, docid: str) -> None:
        self._echoes.discard(docid)
        entry = self._entries.pop(docid, None)
        if entry is not None:
            self.bytes -= entry.size
