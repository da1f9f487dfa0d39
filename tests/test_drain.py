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
    drained = messages.index("draining: 5 requests in flight, up to 10.0 s")
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
