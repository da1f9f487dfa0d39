"""The verified change feed: representations in order, tampered documents reported not passed
on, opaque positions that resume exactly, long poll and server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from urllib.parse import urlsplit

import aiohttp
import orjson
from faults import FaultProxy
from support import running_sidecar, serving, until
from support.documents import NOTE

from data_service.canonical import canonical
from data_service.couchdb import Limits


async def create_notes(api, n: int, prefix: str = "n") -> list[dict]:
    notes = []
    for i in range(n):
        reply = await api.request("POST", "/v1/note", json={**NOTE, "title": f"{prefix}{i}"})
        assert reply.status == 201
        notes.append(reply.body)
    return notes


async def feed(api, query: str = "") -> dict:
    reply = await api.request("GET", f"/v1/note/_changes{query}")
    assert reply.status == 200, reply.body
    return reply.body


async def test_positions_resume_exactly_and_belong_to_their_feed(api):
    notes = await create_notes(api, 6)
    page = await feed(api, "?limit=2")
    seen = [r["id"] for r in page["results"]]
    while len(seen) < 6:  # resume from the position of the last item seen, like a reconnecting consumer
        page = await feed(api, f"?since={page['results'][-1]['position']}&limit=2")
        seen += [r["id"] for r in page["results"]]
    assert sorted(seen) == sorted(n["id"] for n in notes) and len(seen) == 6  # each once
    foreign = await api.request("GET", f"/v1/user/_changes?since={page['last']}")
    assert foreign.status == 400 and foreign.body["code"] == "invalid_query"
    garbled = await api.request("GET", "/v1/note/_changes?since=AAAA")
    assert garbled.status == 400 and garbled.body["code"] == "invalid_query"
    for since, header in (("", page["last"]), (page["last"], ""), ("now", "AAAA")):  # each value checked
        both = await api.request("GET", f"/v1/note/_changes?since={since}", headers={"Last-Event-ID": header})
        assert both.status == 400 and both.body["code"] == "invalid_query", (since, header)
    bad = await api.request("GET", "/v1/note/_changes?limit=٣")
    assert bad.status == 400


async def test_a_long_poll_answers_when_something_changes(api):
    now = await feed(api, "?since=now")
    assert now["results"] == []
    waiting = asyncio.ensure_future(feed(api, f"?since={now['last']}&feed=longpoll&timeout=20"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    [note] = await create_notes(api, 1, "late")
    body = await asyncio.wait_for(waiting, 10)
    assert [r["id"] for r in body["results"]] == [note["id"]]


async def events(http, url: str, count: int, last_event_id: str | None = None) -> list[tuple[str, dict]]:
    """Read ``count`` server-sent events, then hang up."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    got: list[tuple[str, dict]] = []
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        event: dict = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in event:
                    got.append((event["id"], orjson.loads(event["data"])))
                    if len(got) == count:
                        return got
                event = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                event[field] = value
    return got


async def test_an_event_stream_consumer_sees_every_change_once_across_a_reconnect(api, http, sidecar):
    notes = await create_notes(api, 4)
    first = await events(http, f"{sidecar}/v1/note/_changes", 2)  # then the consumer drops the connection
    more = await create_notes(api, 3, "m")
    # an EventSource reconnects to the URL it began with; Last-Event-ID, the later position, wins over since
    again = f"{sidecar}/v1/note/_changes?since={first[0][0]}"
    rest = await asyncio.wait_for(events(http, again, 5, last_event_id=first[-1][0]), 20)
    seen = [item["id"] for _, item in first + rest]
    assert sorted(seen) == sorted(n["id"] for n in notes + more) and len(seen) == 7  # each once
    shown = {item["id"]: item["doc"] for _, item in first + rest}
    assert all(canonical(shown[n["id"]]) == canonical(n) for n in notes + more)


STREAMS = 110  # asked for at once: more than the sidecar's CouchDB connection pool holds
MAX_STREAMS = 32  # --max-streams' default


async def hold_stream(session, url: str, event_stream: bool, answers: list) -> None:
    """One change stream: a long poll of 60 s, or an event stream; appends its answer's
    (status, Retry-After, problem body) as soon as its headers come, then holds it."""
    headers = {"Accept": "text/event-stream"} if event_stream else {}
    query = "since=now" if event_stream else "since=now&feed=longpoll&timeout=60"
    async with session.get(f"{url}/v1/note/_changes?{query}", headers=headers) as resp:
        body = await resp.json(content_type=None) if resp.status != 200 else None
        answers.append((resp.status, resp.headers.get("Retry-After"), body))
        await asyncio.Event().wait()  # until cancelled


async def test_change_streams_are_bounded_so_a_plain_get_still_answers(config, tmp_path, http):
    """Issue 22 row 9: each long poll and event stream holds a CouchDB connection while it
    waits; with 110 open a plain GET waited 16.8 s for one and the cache feed starved. Past
    --max-streams one more is answered 503 busy + Retry-After, and a GET of a document the
    sidecar never read answers. Its latency is printed; the assertion is only < 5 s, a bound
    a loaded machine keeps and a GET queued behind long polls (up to 60 s each) does not."""
    async with running_sidecar(config) as other:  # another sidecar writes: the one under test never read it
        async with http.post(f"{other}/v1/note", json=NOTE) as resp:
            assert resp.status == 201
            note = await resp.json()
    url = urlsplit(config.couchdb_url)
    proxy = FaultProxy(url.hostname, url.port)  # counts the sidecar's connections to CouchDB
    await proxy.start()
    answers: list = []
    streams: list[asyncio.Task] = []
    try:
        async with (
            serving(replace(config, couchdb_url=f"http://127.0.0.1:{proxy.port}"), tmp_path) as served,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        ):
            streams = [
                asyncio.create_task(hold_stream(session, served.base, i % 2 == 1, answers)) for i in range(STREAMS)
            ]
            pool = Limits().max_connections

            async def saturated() -> bool:  # every stream holds a connection it could get, or was refused
                refused = sum(1 for status, _, _ in answers if status == 503)
                return proxy.connections + refused >= pool

            await until(saturated, f"{STREAMS} streams placed", timeout=60)
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with http.get(f"{served.base}/v1/note/{note['id']}") as resp:
                status, body = resp.status, await resp.json(content_type=None)
            latency = loop.time() - started
            print(f"GET of an uncached document with {STREAMS} streams asked for: {latency:.3f} s")
            assert status == 200 and body == note, body
            assert latency < 5.0, f"the GET waited {latency:.1f} s"

            async def placed() -> bool:  # refused, or an event stream that began (a long poll answers later)
                return len(answers) >= STREAMS - MAX_STREAMS + MAX_STREAMS // 2

            await until(placed, "every stream refused or begun")
            refused = [(retry, body) for status, retry, body in answers if status == 503]
            assert len(refused) == STREAMS - MAX_STREAMS, sorted(status for status, _, _ in answers)
            assert all(retry and body["code"] == "busy" and body["retryable"] for retry, body in refused)
            assert "--max-streams" in refused[0][1]["detail"]

            # and the cache feed still follows: a change made elsewhere is served once it is reported
            async with http.get(f"{served.base}/v1/note/{note['id']}") as resp:  # now cached
                etag = resp.headers["ETag"]
            async with running_sidecar(config) as other:
                patch = {"Content-Type": "application/merge-patch+json", "If-Match": etag}
                async with http.patch(f"{other}/v1/note/{note['id']}", data=b'{"counter": 1}', headers=patch) as resp:
                    assert resp.status == 200

            async def followed() -> bool:
                async with http.get(f"{served.base}/v1/note/{note['id']}") as resp:
                    return (await resp.json())["counter"] == 1

            await until(followed, "the sidecar under test serves the change", timeout=10)
    finally:
        for task in streams:
            task.cancel()
        for task in streams:
            with contextlib.suppress(BaseException):
                await task
        await proxy.close()
