"""The read cache (issue 13) against a real server: hits and misses, read-your-writes,
writes made elsewhere (another sidecar, straight into CouchDB) seen once the change
feed reports them, Cache-Control, the feed lost and resumed, tampered documents never
cached, and two workers never answering older than an acknowledged write. The pure core:
tests/unit/test_cache_core.py."""

from __future__ import annotations

import asyncio
import signal
import uuid
from dataclasses import replace

import aiohttp
import pytest
from support import Api, install_design_docs, proxied, running_app, running_sidecar, serving, spec_api, until
from support.documents import MERGE, new_note
from support.metrics import cache_counter, cache_gauge, cache_live, metric, metric_of, scrape

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

        async def from_the_cache() -> bool:
            hits = await cache_counter(http, base, "hits")
            return (await api.request("GET", url)).body == listed.body and (
                await cache_counter(http, base, "hits") == hits + 4
            )

        # the feed's report of the new event may come after the page fetched it (on a cluster
        # it can be late): that report drops the entry once, and the next page caches it again
        await until(from_the_cache, "the whole page is answered from the cache")

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
