"""Prometheus metrics and the database report (``GET /_metrics``, ``GET /_metrics/database``).

Every app has its own ``Metrics`` (its own ``CollectorRegistry``, never the global
one), fed from three places:

* ``observe_http``: called by ``web.base.BaseHandler.on_finish`` for every request,
  labelled by route *pattern* (``/v1/{type}/{id}``), never the raw path;
* ``observe_couchdb``: the ``CouchDB(observer=...)`` hook, called after every
  attempt, labelled by an ``operation`` derived from the path without ids;
* ``watch(store)``: a collector reading ``store.stats``, the id pool and the
  bcrypt executor at scrape time.

``store.report.database_report`` asks CouchDB for database and view index sizes;
``Metrics`` caches its answer for ``DATABASE_REPORT_TTL`` seconds so scrapes don't
hammer CouchDB.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar
from urllib.parse import unquote

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from .worker_metrics import WorkerMetrics

# The formats /_metrics negotiates (prometheus_client's choose_encoder: OpenMetrics when
# Accept asks for it, else the classic text format).
MEDIA_TYPES = ("text/plain", "application/openmetrics-text")
# No `<counter>_created` series beside every counter and histogram: Prometheus does not
# need them, and in the text format they read as a second counter of each name.
disable_created_metrics()
DATABASE_REPORT_TTL = 5.0  # seconds
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS"})

_DB_OPERATIONS = {
    "_all_docs": "all_docs",
    "_bulk_docs": "bulk_docs",
    "_bulk_get": "bulk_get",
    "_changes": "changes",
    "_security": "security",
}


def couchdb_operation(target: str) -> str:
    """What a CouchDB request path does, without ids: ``/db/abc`` → ``doc``."""
    parts = [p for p in target.split("?", 1)[0].split("/") if p]
    if not parts:
        return "server"
    if parts[0] == "_uuids":
        return "uuids"
    if parts[0] == "_node" and "_config" in parts:
        return "node_config"
    if parts[0].startswith("_"):
        return "other"
    rest = parts[1:]
    if not rest:
        return "db"
    first = unquote(rest[0])
    if first in _DB_OPERATIONS and len(rest) == 1:
        return _DB_OPERATIONS[first]
    if first == "_local" or first.startswith("_local/"):
        return "local_doc"
    if first == "_design" or first.startswith("_design/"):
        tail = rest[2:] if first == "_design" else rest[1:]
        if not tail:
            return "design_doc"
        if tail[0] == "_view":
            return "view"
        if tail == ["_info"]:
            return "design_info"
        return "other"
    if first.startswith("_") or len(rest) > 1:
        return "other"
    return "doc"


class Metrics:
    def __init__(self, report_ttl: float = DATABASE_REPORT_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, _resident_memory_bytes, ...
        self.http_requests = Counter(
            "data_service_http_requests",
            "HTTP requests answered, by route pattern, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "data_service_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method"],
            registry=self.registry,
        )
        self.couchdb_requests = Counter(
            "data_service_couchdb_requests",
            "CouchDB request attempts, by operation, method and status (`none`: no response came).",
            ["operation", "method", "status"],
            registry=self.registry,
        )
        self.couchdb_duration = Histogram(
            "data_service_couchdb_request_duration_seconds",
            "Time of a CouchDB request attempt.",
            ["operation", "method"],
            registry=self.registry,
        )
        self.database_report = Cached(report_ttl, clock)
        self._children: dict[tuple, tuple[Any, Any]] = {}  # (metric, labels) → labelled children
        self.workers: WorkerMetrics | None = None  # --workers: every worker's series in one scrape

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        self._observe(self.http_requests, self.http_duration, (route, method, str(status)), seconds)

    def observe_couchdb(self, method: str, operation: str, status: int | None, seconds: float) -> None:
        """The ``CouchDB(observer=...)`` hook; ``operation``: ``couchdb_operation`` of the path."""
        self._observe(
            self.couchdb_requests,
            self.couchdb_duration,
            (operation, method, "none" if status is None else str(status)),
            seconds,
        )

    def _observe(self, count: Counter, duration: Histogram, labels: tuple[str, str, str], seconds: float) -> None:
        """One more of ``count`` by ``labels``, its ``seconds`` in ``duration`` by all but
        the status. The labelled children are kept: ``labels()`` costs a lock and a
        lookup each time."""
        key = (id(count), labels)
        if (children := self._children.get(key)) is None:
            children = self._children[key] = (count.labels(*labels), duration.labels(*labels[:2]))
        children[0].inc()
        children[1].observe(seconds)

    def watch(self, store: Any) -> None:
        """Expose ``store``'s counters and queues (read at scrape time)."""
        self.registry.register(StoreCollector(store))

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for, and its content type; with
        workers, every worker's (``worker_metrics``)."""
        encode, content_type = choose_encoder(accept or "")
        if self.workers is None:
            return encode(self.registry), content_type
        return encode(self.workers.merged(generate_latest(self.registry))), content_type

    async def publish(self) -> None:
        """``--workers``: this worker's snapshot, for the sibling a scrape reaches."""
        if self.workers is not None:
            self.workers.publish(generate_latest(self.registry))


class StoreCollector:
    """``DocumentStore.stats`` as counters; id pool size and bcrypt queue depth as gauges."""

    COUNTERS: ClassVar[dict[str, str]] = {
        "integrity_violations": "Documents read whose signature check failed.",
        "stale_revisions": "Writes answered 412 stale_revision.",
        "patch_retries": "CouchDB conflicts the service's own PATCH loop retried.",
        "write_conflicts": "409 conflicts CouchDB answered to document writes.",
        "conflicts_found": "Replication-conflicted documents the reconciler looked at (each time).",
        "conflicts_resolved": "Conflicted documents merged and their losing revisions deleted.",
        "conflicts_unresolvable": "Conflicted documents left as they are (e.g. immutable values differ).",
        "conflict_leaves_discarded": "Conflicting revisions discarded because they failed their signature check.",
        "writes_below_quorum": "Writes not stored on every copy (202): provisional (not-met) or withdrawn.",
        "races_withdrawn": "Writes below quorum that lost a race to a write from the same revision: withdrawn.",
    }

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self):
        for name, documentation in self.COUNTERS.items():
            yield CounterMetricFamily(f"data_service_{name}", documentation, value=getattr(self.store.stats, name))
        yield GaugeMetricFamily(
            "data_service_id_pool_size", "CouchDB-generated ids prefetched and unused.", value=len(self.store.ids)
        )
        for name, documentation in (
            ("verify_attempts", "POST /v1/{type}/{id}/verify calls answered, by type."),
            ("verify_failures", "... of which some candidate did not match, by type."),
        ):
            family = CounterMetricFamily(f"data_service_{name}", documentation, labels=["type"])
            for type_name, count in sorted(getattr(self.store.stats, name).items()):
                family.add_metric([type_name], count)
            yield family
        hasher = self.store.hasher
        yield GaugeMetricFamily(
            "data_service_bcrypt_queue_depth", "bcrypt hash/check jobs queued or running.", value=hasher.pending
        )
        yield CounterMetricFamily(
            "data_service_bcrypt_busy",
            "bcrypt jobs refused with 503 busy (queue full or waited too long).",
            value=hasher.refused,
        )
        yield from cache_metrics(self.store)


CACHE_COUNTERS = {
    "hits": "GETs by id answered from the read cache.",
    "misses": "GETs by id the read cache could not answer (read from CouchDB).",
    "evictions": "Cache entries dropped to make room (least recently used).",
    "invalidations": "Cache entries dropped because their document changed.",
    "flushes": "Times the whole cache was forgotten (the change feed could not resume).",
    "parents": "Writes naming a cached revision, made without reading CouchDB first.",
}


def cache_metrics(store: Any):
    """The read cache of this worker (each worker has its own; ``worker`` names it)."""
    cache, feed, worker = store.cache, store.feed, {"worker": str(store.worker)}
    for name, documentation in CACHE_COUNTERS.items():
        family = CounterMetricFamily(f"data_service_cache_{name}", documentation, labels=["worker"])
        family.add_metric([worker["worker"]], getattr(cache.stats, name))
        yield family
    gauges = {
        "entries": ("Documents in the read cache.", len(cache)),
        "bytes": ("Bytes the read cache holds (bodies and bookkeeping).", cache.bytes),
        "live": ("1 while the change feed follows the database and the cache serves; 0: bypassed.", int(cache.serving)),
        "feed_lag_seconds": (
            "Seconds since the cache feed's last answer was asked for (the cache serves only below its bound).",
            feed.age,
        ),
    }
    for name, (documentation, value) in gauges.items():
        gauge = GaugeMetricFamily(f"data_service_cache_{name}", documentation, labels=["worker"])
        gauge.add_metric([worker["worker"]], value)
        yield gauge


class Cached:
    """One value, recomputed when older than ``ttl`` seconds; concurrent callers
    share one computation, and a failed one is not cached."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._task: asyncio.Future | None = None
        self._at = 0.0

    async def get(self, compute: Callable[[], Awaitable[Any]]) -> Any:
        task = self._task
        if task is None or not self._fresh():
            self._at = self.clock()
            task = self._task = asyncio.ensure_future(compute())
        return await asyncio.shield(task)

    def _fresh(self) -> bool:
        task = self._task
        if task is None:
            return False
        if not task.done():
            return True
        if task.cancelled() or task.exception() is not None:
            return False
        return self.clock() - self._at < self.ttl
