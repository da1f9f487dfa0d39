"""Graceful drain: SIGTERM to a real ``data-service serve`` process while requests are
in flight (CouchDB made slow by a delaying TCP proxy)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace

import aiohttp
import orjson
import pytest
from faults import FaultProxy
from openapi_check import SpecChecker
from support import Api, install_design_docs, serving

from data_service.web.changes import POSITION


class Connection:
    """One raw HTTP/1.1 keep-alive connection: it stays open across the SIGTERM, as a
    load balancer's does (aiohttp's pool would open a new one)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip()] = value.strip()
        return status, headers, await self.reader.readexactly(int(headers.get("Content-Length", "0")))

    def close(self) -> None:
        self.writer.close()


async def until(condition, timeout: float = 10.0) -> None:
    """Wait for a condition of the setup (not an assertion) to hold."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the setup"
        await asyncio.sleep(0.02)


@pytest.fixture
async def slow_couch(config, db):
    """The test database behind a proxy whose ``delay`` makes CouchDB slow on demand."""
    await install_design_docs(db)
    async with FaultProxy.to(config.couchdb_url) as proxy:
        yield proxy, replace(config, couchdb_url=proxy.url)


async def start_slow_gets(served, proxy, count: int, delay: float):
    """``count`` notes created, then read while each CouchDB answer takes ``delay`` s;
    returns once every read has reached CouchDB."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{served.base}/openapi.json") as resp:
            spec = await resp.json()
    session = aiohttp.ClientSession()
    api = Api(session, served.base, SpecChecker(spec))
    ids = [(await api.request("POST", "/v1/note", json={"title": f"slow {i}"})).body["id"] for i in range(count)]
    proxy.delay = delay
    fresh = {"Cache-Control": "no-cache"}  # past the read cache: these reads wait for CouchDB
    reads = [asyncio.create_task(api.request("GET", f"/v1/note/{docid}", headers=fresh)) for docid in ids]
    # each read may ask CouchDB something first (GET /, once per process), as slow as the rest
    await until(lambda: len(proxy.seen("GET", "|".join(f"/{docid}$" for docid in ids))) >= count, 2 * delay + 10)
    return session, api, ids, reads


def log_has(served, text: str):
    return lambda: text in served.log_path.read_text()


async def test_sigterm_fails_readiness_refuses_connections_and_finishes_requests(slow_couch, tmp_path):
    proxy, config = slow_couch
    async with serving(config, tmp_path) as served:
        probe = await Connection.open(served.port)
        status, _, _ = await probe.get("/_health?quick=false")
        assert status == 200
        session, api, ids, reads = await start_slow_gets(served, proxy, count=5, delay=1.0)
        try:
            served.process.send_signal(signal.SIGTERM)
            await until(log_has(served, "draining: "))

            status, headers, body = await probe.get("/_health?quick=false")  # the kept-alive connection
            api.checker.check("GET", "/_health?quick=false", status, headers, body)
            assert status == 503 and orjson.loads(body)["code"] == "draining" and headers["Retry-After"] == "1"
            with pytest.raises(OSError):  # a new connection is refused
                await asyncio.open_connection("127.0.0.1", served.port)

            replies = await asyncio.gather(*reads)
            assert [reply.status for reply in replies] == [200] * 5
            assert [reply.body["id"] for reply in replies] == ids
            assert await asyncio.wait_for(served.process.wait(), 15) == 0
        finally:
            probe.close()
            await session.close()
    lines = served.log_lines()
    messages = [line["message"] for line in lines]
    drained = messages.index("draining: 5 requests in flight, up to 8.0 s")
    finished = [i for i, line in enumerate(lines) if line.get("route") == "/v1/{type}/{id}" and line["method"] == "GET"]
    assert len(finished) == 5 and min(finished) > drained
    assert all(lines[i]["status"] == 200 for i in finished)
    assert messages[-1] == "stopped" and not any("cut off" in m for m in messages)


async def test_with_workers_sigterm_drains_every_worker_and_refuses_connections(slow_couch, tmp_path):
    proxy, config = slow_couch
    async with serving(config, tmp_path, "--workers=2") as served:
        session, api, ids, reads = await start_slow_gets(served, proxy, count=6, delay=1.0)
        try:
            served.process.send_signal(signal.SIGTERM)  # to the parent, which passes it on
            await until(lambda: served.log_path.read_text().count("draining: ") == 2)
            with pytest.raises(OSError):  # no worker, and not the parent, listens any more
                await asyncio.open_connection("127.0.0.1", served.port)
            replies = await asyncio.gather(*reads)
            assert [reply.status for reply in replies] == [200] * 6
            assert await asyncio.wait_for(served.process.wait(), 15) == 0
        finally:
            await session.close()
    messages = [line["message"] for line in served.log_lines()]
    assert messages.count("stopped") == 2 and not any("cut off" in m for m in messages)


async def test_requests_past_the_drain_timeout_are_cut_off(slow_couch, tmp_path):
    proxy, config = slow_couch
    async with serving(config, tmp_path, "--drain-timeout=0.5") as served:
        session, api, ids, reads = await start_slow_gets(served, proxy, count=2, delay=5.0)
        try:
            started = asyncio.get_running_loop().time()
            served.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(served.process.wait(), 15) == 0
            assert asyncio.get_running_loop().time() - started < 4.0  # not the 5 s CouchDB would take
            outcomes = await asyncio.gather(*reads, return_exceptions=True)
            assert all(isinstance(outcome, aiohttp.ClientError) for outcome in outcomes), outcomes
        finally:
            await session.close()
    messages = [line["message"] for line in served.log_lines()]
    assert "drain timeout: 2 requests still in flight are cut off" in messages


class EventStream:
    """A server-sent events follower on a raw connection: the events as they come, and
    whether the stream ended cleanly (the chunked body's last chunk, then EOF)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[tuple[str, str, dict]] = []  # (event, id, data)
        self.ended_cleanly = False

    @classmethod
    async def open(cls, port: int, path: str) -> EventStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        stream = cls(reader, writer)
        assert (await reader.readline()).split()[1] == b"200"
        while await reader.readline() not in (b"\r\n", b""):
            pass
        return stream

    async def follow(self) -> None:
        """Read chunks until the stream ends; parse the events in them."""
        text = b""
        while True:
            size = int((await self.reader.readline()).strip() or b"0", 16)
            if size == 0:
                self.ended_cleanly = await self.reader.readline() == b"\r\n" and await self.reader.read() == b""
                break
            text += (await self.reader.readexactly(size + 2))[:-2]
            *blocks, text = text.split(b"\n\n")
            for block in blocks:
                fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if not line.startswith(":"))
                if "event" in fields:
                    self.events.append((fields["event"], fields["id"], orjson.loads(fields["data"])))

    def close(self) -> None:
        self.writer.close()


def troubles_in(served) -> list[dict]:
    """Log lines at warning or error level, and answers with a 5xx other than readiness'
    ``draining``: a drain that goes as planned has none."""
    return [
        line
        for line in served.log_lines()
        if line["level"] in ("warning", "error") or (line.get("status", 0) >= 500 and line.get("code") != "draining")
    ]


async def test_sigterm_ends_long_polls_and_event_streams_at_drain_start(slow_couch, tmp_path):
    """A long poll answers at once with its last position, an event stream gets a final
    ``end`` event and a clean close, a request in flight completes: no 5xx, no warning,
    and the drain is over long before its timeout (the followers would have held it)."""
    proxy, config = slow_couch
    # no read cache: the proxy's 1 s per answer below would rightly stop it (its feed must
    # answer within a bound, docs/cache.md) and log so; the drain is this test's subject
    async with serving(config, tmp_path, "--drain-timeout=20", "--cache-size=0") as served:
        session, api, ids, _ = await start_slow_gets(served, proxy, count=1, delay=0.0)
        try:
            now = (await api.request("GET", "/v1/note/_changes?since=now")).body["last"]
            before = len(proxy.seen())
            poll = asyncio.create_task(api.request("GET", f"/v1/note/_changes?feed=longpoll&timeout=60&since={now}"))
            stream = await EventStream.open(served.port, "/v1/note/_changes?since=now")
            following = asyncio.create_task(stream.follow())
            await until(lambda: len(proxy.seen()) >= before + 3)  # the long poll, the stream's first read and its poll
            proxy.delay = 1.0
            read = asyncio.create_task(api.request("GET", f"/v1/note/{ids[0]}", headers={"Cache-Control": "no-cache"}))
            await until(lambda: len(proxy.seen()) >= before + 4)
            started = asyncio.get_running_loop().time()
            served.process.send_signal(signal.SIGTERM)
            polled = await asyncio.wait_for(poll, 15)
            assert polled.status == 200 and polled.body["results"] == [] and POSITION.fullmatch(polled.body["last"])
            await asyncio.wait_for(following, 15)
            assert stream.ended_cleanly and [event for event, _, _ in stream.events] == ["end"]
            _, position, data = stream.events[0]
            assert data == {"reason": "draining", "position": position} and POSITION.fullmatch(position)
            answered = await read
            assert answered.status == 200 and answered.body["id"] == ids[0]
            assert await asyncio.wait_for(served.process.wait(), 20) == 0
            assert asyncio.get_running_loop().time() - started < 10  # not the 20 s drain timeout
        finally:
            stream.close()
            await session.close()
    assert not troubles_in(served)
    messages = [line["message"] for line in served.log_lines()]
    assert messages[-1] == "stopped" and not any("cut off" in m for m in messages)


async def test_with_a_drain_delay_it_serves_while_the_application_calls(slow_couch, tmp_path):
    """A classic sidecar gets SIGTERM with its application, which still finishes its work:
    with --drain-delay the sidecar goes on listening and answering (readiness already
    503), new connections too, until the application has been quiet for --drain-quiet
    seconds; then it drains and exits, long before the delay's end."""
    proxy, config = slow_couch
    flags = ("--drain-delay=60", "--drain-quiet=1")
    async with serving(config, tmp_path, *flags) as served:
        session, api, ids, setup = await start_slow_gets(served, proxy, count=1, delay=0.0)
        await asyncio.gather(*setup)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            served.process.send_signal(signal.SIGTERM)
            await until(log_has(served, "SIGTERM: serving on for up to 60.0 s"))
            probe = await Connection.open(served.port)  # a new connection: still accepted
            status, headers, body = await probe.get("/_health?quick=false")
            assert status == 503 and orjson.loads(body)["code"] == "draining" and "Connection" not in headers
            probe.close()
            for n in range(8):  # the application finishing its work: a call every 0.3 s
                async with aiohttp.ClientSession() as fresh:  # each on a new connection
                    async with fresh.get(f"{served.base}/v1/note/{ids[0]}") as resp:
                        assert resp.status == 200, n
                await asyncio.sleep(0.3)
            last_call = loop.time()
            assert await asyncio.wait_for(served.process.wait(), 30) == 0
            assert loop.time() - last_call < 15 and loop.time() - started < 30  # quiet, not the 60 s delay
        finally:
            await session.close()
    lines = served.log_lines()
    messages = [line["message"] for line in lines]
    signalled = next(i for i, m in enumerate(messages) if m.startswith("SIGTERM: serving on for up to 60.0 s"))
    drained = messages.index("draining: 0 requests in flight, up to 8.0 s")
    reads = [i for i, line in enumerate(lines) if line.get("route") == "/v1/{type}/{id}" and i > signalled]
    assert len(reads) == 8 and max(reads) < drained  # every call answered before the drain began
    assert not troubles_in(served) and messages[-1] == "stopped"
