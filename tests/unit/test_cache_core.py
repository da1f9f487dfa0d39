"""The read cache's pure core (``data_service.cache``): reads racing writes, flush and bypass,
LRU by bytes, write counters across workers; worker counts, merged worker metrics, Cache-Control.
The cache through a running sidecar is tests/server/test_cache.py's."""

from __future__ import annotations

import os

from support.metrics import metric

from data_service.cache import Cache, Entry, WriteCounters
from data_service.web.accept import wants_fresh


def entry(body: bytes = b"{}", rev: str = "1-a") -> Entry:
    return Entry("note", rev, f'"{rev}"', body)


def test_a_read_that_started_before_a_write_cannot_store_the_older_version():
    cache = Cache(1 << 20)
    cache.resume()
    before = cache.ticket("a")  # a read starts
    cache.changed("a", "2-b")  # a write lands (or the feed reports one)
    assert not cache.put("a", before, entry(rev="1-a"))
    assert cache.get("a", "note") is None
    after = cache.ticket("a")
    assert cache.put("a", after, entry(rev="2-b"))
    assert cache.get("a", "note").rev == "2-b"
    assert cache.get("a", "user") is None  # another type's id: a miss


def test_flush_and_bypass_refuse_reads_in_flight():
    cache = Cache(1 << 20)
    cache.resume()
    ticket = cache.ticket("a")
    cache.bypass()
    assert not cache.put("a", ticket, entry()) and cache.get("a", "note") is None
    cache.resume()
    assert not cache.put("a", ticket, entry())  # from before the outage: may be stale
    assert cache.put("a", cache.ticket("a"), entry())
    cache.flush()
    assert len(cache) == 0 and cache.bytes == 0


def test_lru_by_bytes():
    one = entry(b"x" * 1000)
    cache = Cache(3 * one.size)
    cache.resume()
    for docid in "abc":
        assert cache.put(docid, cache.ticket(docid), one)
    assert cache.get("a", "note") is not None  # a is now the most recent
    cache.put("d", cache.ticket("d"), one)
    assert cache.get("b", "note") is None and cache.get("a", "note") is not None
    assert cache.stats.evictions == 1 and cache.bytes == 3 * one.size


def test_a_full_cache_holds_about_its_size_in_memory():
    """--cache-size is memory, not just the bodies' lengths: orjson's output keeps a 4 KiB
    buffer, so entries are stored as exact copies, and the bookkeeping is counted."""
    import tracemalloc

    import orjson

    capacity = 4 << 20
    cache = Cache(capacity)
    cache.resume()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(3 * capacity // 1000):  # more than fit: evictions too
            docid, rev = f"{i:032x}", f"1-{i:032x}"
            body = orjson.dumps({"id": docid, "title": "t", "body": "x" * 200, "counter": i})
            stored = orjson.dumps({"_id": docid, "_rev": rev, "title": "t", "body": "x" * 200, "sig": "s" * 120})
            cache.put(docid, cache.ticket(docid), Entry("note", rev, f'"{rev}"', body, stored))
            del body, stored
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.stats.evictions > 0 and capacity - 2000 < cache.bytes <= capacity
    assert held < 1.2 * capacity, held


def test_a_write_by_another_worker_invalidates_the_entry():
    shared = WriteCounters.shared(2)
    mine, theirs = Cache(1 << 20, shared.as_worker(0)), shared.as_worker(1)
    mine.resume()
    assert mine.put("a", mine.ticket("a"), entry())
    theirs.bump("a")
    assert mine.get("a", "note") is None


def test_the_feed_reporting_the_very_revision_being_stored_does_not_lose_the_entry():
    cache = Cache(1 << 20)
    cache.resume()
    assert cache.put("a", cache.ticket("a"), entry(rev="1-a"))
    ticket = cache.ticket("a")  # a write starts
    cache.changed("a", "2-b")  # the feed reports it before CouchDB's answer to the PUT arrives
    cache.written("a", "2-b")  # the answer
    assert cache.put("a", ticket, entry(rev="2-b"), own_writes=1)
    assert cache.get("a", "note").rev == "2-b"
    ticket = cache.ticket("a")
    cache.changed("a", "3-c")  # a write made elsewhere meanwhile, not ours
    cache.written("a", "3-x")
    assert not cache.put("a", ticket, entry(rev="3-x"), own_writes=1)
    ticket = cache.ticket("b")  # a read of a document just made elsewhere
    cache.changed("b", "1-b")  # the feed reports its creation before the read's answer
    assert not cache.put("b", ticket, entry(rev="1-b"))  # a read is never excepted: the next one stores it
    assert cache.put("b", cache.ticket("b"), entry(rev="1-b"))
    ticket = cache.ticket("b")
    cache.changed("b", "2-b")
    assert not cache.put("b", ticket, entry(rev="1-b"))  # read before a change the feed reported


def test_a_feed_report_stays_in_its_worker_a_write_does_not():
    shared = WriteCounters.shared(2)
    mine, theirs = Cache(1 << 20, shared.as_worker(0)), Cache(1 << 20, shared.as_worker(1))
    mine.resume()
    assert mine.put("a", mine.ticket("a"), entry(rev="2-b"))
    theirs.changed("a", "2-b")  # their feed reports the revision we hold: nothing to forget here
    assert mine.get("a", "note").rev == "2-b"
    theirs.written("a", "3-c")  # a write through the other worker
    assert mine.get("a", "note") is None


def test_workers_default_to_the_cpus_this_process_may_use(tmp_path):
    from docopt import docopt

    from data_service import cli
    from data_service.config import Config, cpus

    usable = len(os.sched_getaffinity(0))
    args = docopt(cli.__doc__, argv=["serve", "--keys-dir=k", "--couchdb=http://127.0.0.1:5984"])
    assert Config.from_args(args, env={}).workers == cpus() <= usable
    assert cpus(tmp_path / "none") == usable  # no cgroup files: every CPU it may run on
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpus(v2) == usable  # no quota
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: two workers, unless fewer may run
    assert cpus(v2) == min(2, usable)
    (v2 / "cpu.max").write_text("20000 100000\n")
    assert cpus(v2) == 1
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus(v1.parent) == usable
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    assert cpus(v1.parent) == 1


def test_one_scrape_shows_every_workers_series(tmp_path):
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    from data_service.worker_metrics import WorkerMetrics

    snapshots = []
    for worker, count in ((0, 3), (1, 5)):
        registry = CollectorRegistry()
        Counter("demo_requests", "Requests.", ["route"], registry=registry).labels("/a").inc(count)
        snapshots.append(generate_latest(registry))
    WorkerMetrics(tmp_path, 1).publish(snapshots[1])
    text = generate_latest(WorkerMetrics(tmp_path, 0).merged(snapshots[0])).decode()
    assert text.count("# TYPE demo_requests_total counter") == 1  # one family, both workers in it
    assert metric(text, "demo_requests_total", route="/a", worker="0") == 3
    assert metric(text, "demo_requests_total", route="/a", worker="1") == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-1.prom"]  # no partial file left


def test_cache_control():
    assert not wants_fresh(None) and not wants_fresh("max-age=60") and not wants_fresh("")
    assert wants_fresh("no-cache") and wants_fresh("No-Store") and wants_fresh("private, max-age=0")
