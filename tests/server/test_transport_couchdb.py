"""Transport conformance, part 1: every transport (tests/transports.py: KINDS) against the
real server under test (the dev server, or Apache CouchDB in $COUCHDB_URL): statuses,
bodies and headers as the server sent them, keep-alive, large and chunked answers, long
polls, streamed heartbeats. Part 2 (test_transport_faults.py) covers what a real server
does not do on demand."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from faults import FaultProxy
from support import install_design_docs, serving, unique_name, until
from transports import KINDS, header

from data_service.couchdb import Limits, Request, Timeout, Timeouts


@pytest.fixture
async def relayed(couchdb_url):
    """(URL through a connection-counting proxy to the server under test, the proxy)."""
    parts = urlsplit(couchdb_url)
    async with FaultProxy.to(couchdb_url) as proxy:
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
        yield urlunsplit((parts.scheme, netloc, "", "", "")), proxy


async def seq_now(transport, db) -> str:
    """The database's current update sequence (a longpoll since it waits for the next change)."""
    response = await transport.handle(Request("GET", f"/{db.name}"))
    return str(response.json()["update_seq"])


async def test_statuses_bodies_and_headers_come_as_sent(kind, opened, couchdb_url, db):
    transport = opened(kind, couchdb_url)
    root = await transport.handle(Request("GET", "/"))
    assert root.status == 200 and "version" in root.json()

    created = await transport.handle(Request("PUT", f"/{db.name}/doc1", body=b'{"n":1}'))
    assert created.status == 201
    rev = created.json()["rev"]
    assert header(created, "ETag") == f'"{rev}"'

    read = await transport.handle(Request("GET", f"/{db.name}/doc1"))
    assert read.status == 200
    assert read.json() == {"_id": "doc1", "_rev": rev, "n": 1}

    conflict = await transport.handle(Request("PUT", f"/{db.name}/doc1", body=b'{"n":2}'))
    assert (conflict.status, conflict.json()["error"]) == (409, "conflict")

    missing = await transport.handle(Request("GET", f"/{db.name}/nothing"))
    assert (missing.status, missing.json()["error"]) == (404, "not_found")

    posted = await transport.handle(Request("POST", f"/{db.name}/_all_docs", body=b'{"keys":["doc1"]}'))
    assert [row["id"] for row in posted.json()["rows"]] == ["doc1"]


async def test_credentials_go_in_a_basic_header(kind, opened, couchdb_url):
    session = await opened(kind, couchdb_url).handle(Request("GET", "/_session"))
    assert session.json()["userCtx"]["name"] == urlsplit(couchdb_url).username

    parts = urlsplit(couchdb_url)
    # another name than the admin's: CouchDB 3.5 locks a name out after 5 failed logins in 5 minutes
    stranger = unique_name("stranger")
    wrong = urlunsplit((parts.scheme, f"{stranger}:wrong@{parts.hostname}:{parts.port}", "", "", ""))
    refused = await opened(kind, wrong).handle(Request("GET", "/_all_dbs"))
    assert (refused.status, refused.json()["error"]) == (401, "unauthorized")


async def test_one_kept_alive_connection_carries_heads_304s_and_chunked_answers(kind, opened, relayed, db):
    url, proxy = relayed
    transport = opened(kind, url)
    created = await transport.handle(Request("PUT", f"/{db.name}/doc1", body=b'{"n":1}'))
    etag = header(await transport.handle(Request("GET", f"/{db.name}/doc1")), "ETag")
    assert etag

    head = await transport.handle(Request("HEAD", f"/{db.name}/doc1"))
    assert (head.status, head.body) == (200, b"")
    not_modified = await transport.handle(Request("GET", f"/{db.name}/doc1", headers={"If-None-Match": etag}))
    assert (not_modified.status, not_modified.body) == (304, b"")
    listed = await transport.handle(Request("GET", f"/{db.name}/_all_docs", (("include_docs", "true"),)))
    assert [row["doc"]["n"] for row in listed.json()["rows"]] == [1]
    for _ in range(5):
        again = await transport.handle(Request("GET", f"/{db.name}/doc1"))
        assert again.json()["_rev"] == created.json()["rev"]
    assert (await transport.handle(Request("GET", f"/{db.name}/nothing"))).status == 404

    assert proxy.accepted == 1


async def every_copy(db) -> tuple[tuple[str, str], ...]:
    """``Database.every_copy`` as raw query parameters: an ``_all_docs`` read right after
    such a write, which asks one copy per shard range, lists it whichever copy answers."""
    return tuple((name, str(value)) for name, value in ((await db.every_copy()) or {}).items())


async def test_large_bodies_both_ways(kind, opened, couchdb_url, db):
    transport = opened(kind, couchdb_url)
    big = {"_id": "big", "text": "x" * 3_000_000}
    w = await every_copy(db)
    assert (await transport.handle(Request("PUT", f"/{db.name}/big", w, body=orjson.dumps(big)))).status == 201
    read = await transport.handle(Request("GET", f"/{db.name}/big"))
    assert read.json()["text"] == big["text"]

    docs = [{"_id": f"d{i:04}", "payload": "y" * 2000} for i in range(400)]
    bulk = await transport.handle(Request("POST", f"/{db.name}/_bulk_docs", w, body=orjson.dumps({"docs": docs})))
    assert bulk.status == 201
    listed = await transport.handle(Request("GET", f"/{db.name}/_all_docs", (("include_docs", "true"),)))
    rows = listed.json()["rows"]
    assert [row["id"] for row in rows] == ["big"] + [doc["_id"] for doc in docs]
    assert all(row["doc"]["payload"] == "y" * 2000 for row in rows[1:])


async def test_a_longpoll_answers_when_a_change_comes(kind, opened, couchdb_url, db):
    transport = opened(kind, couchdb_url)
    since = await seq_now(transport, db)
    params = (("feed", "longpoll"), ("since", since), ("timeout", "20000"))
    poll = asyncio.create_task(transport.handle(Request("GET", f"/{db.name}/_changes", params, timeout=30)))
    await transport.handle(Request("PUT", f"/{db.name}/woke", body=b"{}"))
    answer = await asyncio.wait_for(poll, 30)
    assert [change["id"] for change in answer.json()["results"]] == ["woke"]


async def test_a_request_timeout_shorter_than_the_longpoll_is_a_timeout(kind, opened, couchdb_url, db):
    transport = opened(kind, couchdb_url, timeouts=Timeouts(request=30))
    since = await seq_now(transport, db)
    params = (("feed", "longpoll"), ("since", since), ("timeout", "60000"))
    started = time.monotonic()
    with pytest.raises(Timeout):
        await transport.handle(Request("GET", f"/{db.name}/_changes", params, timeout=0.5))
    assert time.monotonic() - started < 10  # the request's own 0.5 s, not the default 30
    assert (await transport.handle(Request("GET", f"/{db.name}"))).status == 200  # and the pool still serves


async def test_a_stream_yields_the_whole_body(kind, opened, couchdb_url, db):
    transport = opened(kind, couchdb_url)
    body = orjson.dumps({"text": "z" * 100_000})
    assert (await transport.handle(Request("PUT", f"/{db.name}/doc1", await every_copy(db), body=body))).status == 201
    whole = await transport.handle(Request("GET", f"/{db.name}/_all_docs", (("include_docs", "true"),)))
    async with transport.stream(Request("GET", f"/{db.name}/_all_docs", (("include_docs", "true"),))) as streamed:
        assert streamed.status == 200
        assert b"".join([piece async for piece in streamed.chunks]) == whole.body


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.incremental], ids=lambda kind: kind.name)
async def test_a_streamed_longpoll_shows_its_heartbeats_before_the_change(kind, opened, couchdb_url, db):
    """CouchDB and pouchdb-server both send a newline per ``heartbeat`` while a longpoll
    waits (and both then ignore ``timeout``): a stream sees them as they come."""
    transport = opened(kind, couchdb_url)
    since = await seq_now(transport, db)
    params = (("feed", "longpoll"), ("since", since), ("heartbeat", "100"))
    seen: list[bytes] = []
    async with transport.stream(Request("GET", f"/{db.name}/_changes", params, timeout=30)) as streamed:
        lines = streamed.lines()
        while seen.count(b"") < 2:
            seen.append(await asyncio.wait_for(anext(lines), 10))
        await transport.handle(Request("PUT", f"/{db.name}/woke", body=b"{}"))
        seen += [line async for line in lines]
    assert seen[0].startswith(b'{"results":[')
    answer = orjson.loads(b"".join(seen))
    assert [change["id"] for change in answer["results"]] == ["woke"]


async def test_many_concurrent_requests_share_a_bounded_pool(kind, opened, relayed, db):
    url, proxy = relayed
    transport = opened(kind, url, limits=Limits(max_connections=4))
    answers = await asyncio.gather(
        *(transport.handle(Request("PUT", f"/{db.name}/c{i}", body=b'{"n":1}')) for i in range(40))
    )
    assert sorted(a.json()["id"] for a in answers) == sorted(f"c{i}" for i in range(40))
    assert 1 <= proxy.accepted <= 4


async def test_a_database_made_and_dropped(kind, opened, couchdb_url):
    transport = opened(kind, couchdb_url)
    name = unique_name()
    assert (await transport.handle(Request("PUT", f"/{name}"))).status == 201
    assert (await transport.handle(Request("PUT", f"/{name}"))).status == 412
    assert (await transport.handle(Request("DELETE", f"/{name}"))).status == 200

    async def gone() -> bool:
        # right after the DELETE, CouchDB 3.5.2 may still find the database and not its shards:
        # 500 "No DB shards could be opened." (seen once in CI); then 404 for good
        status = (await transport.handle(Request("GET", f"/{name}"))).status
        assert status in (404, 500), status
        return status == 404

    await until(gone, "the dropped database answers 404")


async def test_serve_on_the_lean_transport_writes_and_reads(config, db, tmp_path, http):
    await install_design_docs(db)
    async with serving(replace(config, couchdb_transport="httptools"), tmp_path) as served:
        async with http.post(f"{served.base}/v1/note", json={"title": "lean"}) as resp:
            assert resp.status == 201, await resp.text()
            docid = (await resp.json())["id"]
        fresh = {"Cache-Control": "no-cache"}  # past the read cache, to CouchDB
        async with http.get(f"{served.base}/v1/note/{docid}", headers=fresh) as resp:
            assert (resp.status, (await resp.json())["title"]) == (200, "lean")
