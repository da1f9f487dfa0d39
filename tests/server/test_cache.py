"""The read cache (issue 13) against a real server: hits and misses, read-your-writes,
writes made elsewhere (another sidecar, straight into CouchDB) seen once the change
feed reports them, Cache-Control, the feed lost and resumed, tampered documents never
cached, and two workers never answering older than an acknowledged write."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from dataclasses import replace

import aiohttp
import pytest
from support import Api, install_design_docs, proxied, running_app, running_sidecar, serving, spec_api, until
from support.documents import MERGE, new_note
from support.metrics import cache_counter, cache_gauge, cache_live, metric, metric_of, scrape

from data_service.cache import Cache, Entry, Stamps
from data_service.web.accept import wants_fresh

COUCHDB_REQUESTS = "data_service_couchdb_requests_total"


async def document_reads(http, base: str) -> float:
    """Requests that read documents by id: ``_bulk_get`` or ``_all_docs`` (CouchDB), one
    by one (the dev server)."""
    text = await scrape(http, base)
    together = [metric(text, COUCHDB_REQUESTS, operation=op) for op in ("bulk_get", "all_docs")]
    return sum(together) + metric(text, COUCHDB_REQUESTS, method="GET", operation="doc", status="200")


async def couchdb_doc_gets(http, base: str) -> float:
    return await metric_of(http, base, COUCHDB_REQUESTS, method="GET", operation="doc", status="200")


async def title_becomes(api: Api, url: str, title: str, headers: dict | None = None) -> dict:
    async def check():
        reply = await api.request("GET", url, headers=headers)
        return reply if reply.status == 200 and reply.body["title"] == title else None

    return await until(check, f"{url} shows {title!r}")


# --- in one sidecar ----------------------------------------------------------------


async def test_a_miss_then_hits_served_without_couchdb(config, http):
    async with running_sidecar(config) as base, running_sidecar(config) as elsewhere:
        api, other = await spec_api(http, base), await spec_api(http, elsewhere)
        await cache_live(http, base)
        created, url = await new_note(other, "made elsewhere")
        misses, hits = await cache_counter(http, base, "misses"), await cache_counter(http, base, "hits")
        first = await api.request("GET", url)
        assert first.status == 200 and first.body["title"] == "made elsewhere"
        assert await cache_counter(http, base, "misses") == misses + 1
        gets = await couchdb_doc_gets(http, base)
        for _ in range(3):
            again = await api.request("GET", url)
            assert (again.status, again.body, again.etag) == (200, first.body, first.etag)
            assert again.headers["Content-Type"] == "application/json"
        assert await cache_counter(http, base, "hits") == hits + 3
        assert await couchdb_doc_gets(http, base) == gets  # no CouchDB round trip
        assert await cache_gauge(http, base, "entries") >= 1 and await cache_gauge(http, base, "bytes") > 0
        not_modified = await api.request("GET", url, headers={"If-None-Match": first.etag})
        assert not_modified.status == 304 and not_modified.headers["ETag"] == first.etag
        assert await couchdb_doc_gets(http, base) == gets


async def test_read_your_writes_from_memory(config, http):
    async with running_sidecar(config) as base:
        api = await spec_api(http, base)
        await cache_live(http, base)
        created, url = await new_note(api, "one")
        for title in ("two", "three", "four"):
            written = await api.request("PATCH", url, json={"title": title}, headers=MERGE)
            assert written.status == 200
            read = await api.request("GET", url)
            assert (read.status, read.body["title"], read.etag) == (200, title, written.etag)
            stale = await api.request("GET", url, headers={"If-None-Match": created.etag})
            assert stale.status == 200 and stale.body["title"] == title
        replaced = await api.request("PUT", url, json={"title": "five"}, headers={"If-Match": read.etag})
        assert (await api.request("GET", url)).body == replaced.body
        assert (await api.request("DELETE", url, headers={"If-Match": replaced.etag})).status == 204
        assert (await api.request("GET", url)).status == 404


async def test_a_write_elsewhere_is_seen_once_the_feed_reports_it(config, http):
    async with running_sidecar(config) as base, running_sidecar(config) as elsewhere:
        api, other = await spec_api(http, base), await spec_api(http, elsewhere)
        await cache_live(http, base)
        created, url = await new_note(api, "mine")
        assert (await api.request("GET", url)).body["title"] == "mine"  # cached
        invalidations = await cache_counter(http, base, "invalidations")
        changed = await other.request("PATCH", url, json={"title": "theirs"}, headers=MERGE)
        assert changed.status == 200
        seen = await title_becomes(api, url, "theirs")
        assert seen.etag == changed.etag
        assert await cache_counter(http, base, "invalidations") > invalidations


@pytest.mark.parametrize("cache_control", ["no-cache", "no-store", "max-age=0", "public, max-age=0"])
async def test_cache_control_reads_couchdb(config, http, cache_control):
    async with running_sidecar(config) as base, running_sidecar(config) as elsewhere:
        api, other = await spec_api(http, base), await spec_api(http, elsewhere)
        await cache_live(http, base)
        created, url = await new_note(api, "cached")
        assert (await api.request("GET", url)).body["title"] == "cached"
        await other.request("PATCH", url, json={"title": "changed"}, headers=MERGE)
        fresh = await api.request("GET", url, headers={"Cache-Control": cache_control})
        assert fresh.status == 200 and fresh.body["title"] == "changed"  # at once: no feed to wait for


async def test_a_tampered_document_is_never_cached(config, http, db):
    async with running_sidecar(config) as base:
        api = await spec_api(http, base)
        await cache_live(http, base)
        created, url = await new_note(api, "signed")
        assert (await api.request("GET", url)).status == 200  # cached
        stored = await db.get(created.body["id"])
        await db.put({**stored, "title": "forged"})  # straight into CouchDB: the signature no longer fits

        async def refused():
            reply = await api.request("GET", url)
            assert reply.status in (200, 500) and "forged" not in str(reply.body)
            return reply.status == 500 and reply.body["code"] == "integrity_violation"

        await until(refused, "the tampered document is refused")
        hits = await cache_counter(http, base, "hits")
        for _ in range(3):
            reply = await api.request("GET", url)
            assert reply.status == 500 and reply.body["code"] == "integrity_violation"
        assert await cache_counter(http, base, "hits") == hits


async def test_feed_lost_bypasses_and_flushes_then_resumes(config, http):
    proxy, through_proxy = await proxied(config)
    async with running_sidecar(through_proxy) as base, running_sidecar(config) as elsewhere:
        api, other = await spec_api(http, base), await spec_api(http, elsewhere)
        await cache_live(http, base)
        created, url = await new_note(api, "before")
        assert (await api.request("GET", url)).body["title"] == "before"
        assert await cache_gauge(http, base, "entries") >= 1
        flushes = await cache_counter(http, base, "flushes")

        await proxy.down()  # CouchDB gone for this sidecar: its feed breaks and cannot resume
        await until(lambda: _is(cache_gauge(http, base, "live"), 0.0), "the cache is bypassed")
        down = await api.request("GET", url)
        assert down.status == 503 and down.body["code"] == "couchdb_unavailable"  # never from memory
        await until(lambda: _is(cache_gauge(http, base, "entries"), 0.0), "the cache is flushed")
        assert await cache_counter(http, base, "flushes") > flushes
        changed = await other.request("PATCH", url, json={"title": "while down"}, headers=MERGE)
        assert changed.status == 200

        await proxy.up()
        await cache_live(http, base)
        back = await api.request("GET", url)
        assert back.status == 200 and back.body["title"] == "while down"
        assert (await api.request("GET", url)).body["title"] == "while down"  # cached again
    await proxy.close()


async def _is(value, expected: float) -> bool:
    return await value == expected


async def test_no_cache_with_cache_size_zero(config, http):
    async with running_app(replace(config, cache_mb=0)) as (base, ctx):
        api = await spec_api(http, base)
        created = await api.request("POST", "/v1/note", json={"title": "t"})
        for _ in range(2):
            assert (await api.request("GET", f"/v1/note/{created.body['id']}")).status == 200
        assert len(ctx.store.cache) == 0 and ctx.store.cache.stats.hits == 0


async def test_a_write_naming_the_cached_revision_reads_no_couchdb(config, http):
    async with running_app(config) as (base, ctx):
        api = await spec_api(http, base)
        await cache_live(http, base)
        feed = ctx.store.feed

        async def reported(reply, seen: int):
            """Wait for the feed to report the write just made: a feed answer from before
            it, arriving after it, would name an older revision and drop the newer entry
            (safe, but then the next write reads CouchDB)."""

            async def caught_up() -> bool:
                return feed.changes_seen > seen

            await until(caught_up, "the feed reports the write")
            return reply

        seen = feed.changes_seen
        created, url = await new_note(api, "one")
        await reported(created, seen)
        gets, parents = await couchdb_doc_gets(http, base), await cache_counter(http, base, "parents")
        seen = feed.changes_seen
        replaced = await reported(
            await api.request("PUT", url, json={"title": "two"}, headers={"If-Match": created.etag}), seen
        )
        assert replaced.status == 200 and replaced.body["title"] == "two"
        seen = feed.changes_seen
        patched = await reported(
            await api.request("PATCH", url, json={"body": "b"}, headers={**MERGE, "If-Match": replaced.etag}), seen
        )
        assert patched.status == 200 and (patched.body["title"], patched.body["body"]) == ("two", "b")
        stale = await api.request("PUT", url, json={"title": "late"}, headers={"If-Match": created.etag})
        assert stale.status == 412 and stale.body["current"]["title"] == "two"
        deleted = await api.request("DELETE", url, headers={"If-Match": patched.etag})
        assert deleted.status == 204
        assert await cache_counter(http, base, "parents") == parents + 3  # the 412 was not one of them
        assert await couchdb_doc_gets(http, base) == gets + 1  # the 412's read of the current document
        assert (await api.request("GET", url, headers={"Cache-Control": "no-cache"})).status == 404


async def test_a_query_page_takes_its_documents_from_the_cache(config, http, db):
    await install_design_docs(db)
    async with running_sidecar(config) as base, running_sidecar(config) as elsewhere:
        api, other = await spec_api(http, base), await spec_api(http, elsewhere)
        await cache_live(http, base)
        owner = f"cache-{uuid.uuid4().hex}"

        async def event(sidecar: Api, day: int) -> dict:
            body = {"owner": owner, "kind": "login", "created_at": f"2026-01-{day:02}T00:00:00Z"}
            return (await sidecar.request("POST", "/v1/event", json=body)).body

        mine = [await event(api, day) for day in (1, 2, 3)]  # cached: written here
        url = f"/v1/event?owner={owner}&sort=created_at"
        fetches, hits = await document_reads(http, base), await cache_counter(http, base, "hits")
        page = await api.request("GET", url)
        assert page.status == 200 and page.body["items"] == mine
        assert await cache_counter(http, base, "hits") == hits + 3
        assert await document_reads(http, base) == fetches  # no document read
        fresh = await api.request("GET", url, headers={"Cache-Control": "no-cache"})  # documents from CouchDB
        assert fresh.body == page.body and await cache_counter(http, base, "hits") == hits + 3

        theirs = await event(other, 4)  # never read here: fetched, verified, then cached
        listed = await until(lambda: _listed(api, url, 4), "the new event is listed")
        assert listed.body["items"] == [*mine, theirs]
        assert await document_reads(http, base) > fetches
        hits = await cache_counter(http, base, "hits")
        assert (await api.request("GET", url)).body == listed.body
        assert await cache_counter(http, base, "hits") == hits + 4

        stored = await db.get(mine[0]["id"])
        await db.put({**stored, "kind": "created"})  # forged straight in CouchDB: the feed drops the entry

        async def named() -> bool:
            reply = await api.request("GET", url)
            return reply.body.get("omitted") == [{"id": mine[0]["id"], "code": "integrity_violation"}]

        await until(named, "the forged event is named, not listed")


async def _listed(api: Api, url: str, count: int):
    reply = await api.request("GET", url)
    return reply if len(reply.body["items"]) == count else None


async def test_a_cached_revision_behind_couchdb_is_not_written_over(config, http):
    """The cache holds revision 1; another sidecar makes revision 2 and this one's feed
    is slow to say so. A write naming revision 1 is tried on the cached document,
    CouchDB refuses it, and the caller gets CouchDB's truth: 412 with revision 2; a
    write naming revision 2 (known to the caller, not yet to the cache) succeeds."""
    proxy, through_proxy = await proxied(config)
    async with running_sidecar(through_proxy) as base, running_sidecar(config) as elsewhere:
        api, other = await spec_api(http, base), await spec_api(http, elsewhere)
        await cache_live(http, base)
        created, url = await new_note(api, "cached")
        parents = await cache_counter(http, base, "parents")
        proxy.delay = 1.0  # every answer from CouchDB to this sidecar, its feed's too, comes late
        theirs = await other.request("PATCH", url, json={"title": "theirs"}, headers=MERGE)
        assert theirs.status == 200
        stale = await api.request("PUT", url, json={"title": "mine"}, headers={"If-Match": created.etag})
        assert stale.status == 412 and stale.body["current"]["title"] == "theirs"
        assert stale.headers["ETag"] == theirs.etag
        proxy.delay = 0.0
        assert await cache_counter(http, base, "parents") == parents + 1  # tried on the cached document first
        mine = await api.request("PUT", url, json={"title": "mine"}, headers={"If-Match": theirs.etag})
        assert mine.status == 200 and mine.body["title"] == "mine"
        assert (await other.request("GET", url, headers={"Cache-Control": "no-cache"})).body["title"] == "mine"
    await proxy.close()


# --- two workers ---------------------------------------------------------------------


async def worker_of(session, base: str) -> str:
    """Which worker answers on this session's (kept-alive) connection."""
    async with session.get(f"{base}/_health") as resp:
        return str((await resp.json())["worker"])


async def test_two_workers_never_answer_older_than_an_acknowledged_write(config, tmp_path):
    async with serving(config, tmp_path, "--workers=2") as served:
        async with aiohttp.ClientSession() as writer:
            wapi = await spec_api(writer, served.base)
            created, url = await new_note(wapi, "0")
            mine = await worker_of(writer, served.base)
            for _ in range(50):  # a reading connection the other worker accepted
                reader = aiohttp.ClientSession()
                if await worker_of(reader, served.base) != mine:
                    break
                await reader.close()
            else:
                pytest.fail("every connection went to one worker")
            async with reader:
                rapi = await spec_api(reader, served.base)

                async def both_live() -> bool:
                    return await metric_of(writer, served.base, "data_service_cache_live") == 2.0  # 1 per worker

                await until(both_live, "both workers' caches are live")
                for i in range(1, 31):
                    assert (await rapi.request("GET", url)).status == 200  # the reader's worker caches it
                    written = await wapi.request("PATCH", url, json={"title": str(i)}, headers=MERGE)
                    assert written.status == 200
                    read = await rapi.request("GET", url)  # at once, on the other worker
                    assert (read.body["title"], read.etag) == (str(i), written.etag), i
                assert await worker_of(reader, served.base) != await worker_of(writer, served.base)

            async def both_workers_counted() -> bool:  # one scrape, whichever worker takes it
                async with aiohttp.ClientSession() as scraper:
                    text = await scrape(scraper, served.base)
                patches = metric(text, "data_service_http_requests_total", method="PATCH", worker=mine)
                other = "1" if mine == "0" else "0"
                gets = metric(text, "data_service_http_requests_total", method="GET", worker=other)
                return patches == 30 and gets >= 60 and metric(text, "data_service_cache_live", worker=other) == 1.0

            await until(both_workers_counted, "one scrape shows both workers' requests")
        served.process.send_signal(signal.SIGTERM)  # to the parent: every worker drains and stops
        assert await asyncio.wait_for(served.process.wait(), 60) == 0
        assert [line["message"] for line in served.log_lines()].count("stopped") == 2
        started = [line for line in served.log_lines() if "listening on" in line.get("message", "")]
        assert sorted(line["message"].split("worker ")[1] for line in started) == ["0 of 2)", "1 of 2)"]


# --- the pure core -------------------------------------------------------------------


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
    shared = Stamps.shared(2)
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
    shared = Stamps.shared(2)
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
