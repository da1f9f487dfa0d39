"""The fault-injecting proxy (tests/faults/) against a tiny local HTTP server: keep-alive
framing (Content-Length, chunked, HEAD, 204, long polls), each action on exactly the
chosen request, seeded probabilities, the link going down and up, latency, the record.
Through it to the server under test: tests/server/test_fault_proxy_on_server.py."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest
from aiohttp import web
from faults import FaultProxy
from support import until


class Origin:
    """The server behind the proxy: what it was asked, on which connections, when it
    answered the long poll."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.asked: list[str] = []
        self.peers: set[tuple] = set()
        self.changes = asyncio.Event()
        self.changes_sent_at: float | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/items/{name}", self.item)
        app.router.add_get("/chunked", self.chunked)
        app.router.add_get("/_changes", self.longpoll)
        app.router.add_get("/empty", self.empty)
        return app

    def _seen(self, request: web.Request) -> None:
        self.asked.append(f"{request.method} {request.path_qs}")
        self.peers.add(request.transport.get_extra_info("peername"))

    async def item(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        name = request.match_info["name"]
        if request.method == "PUT":
            self.stored[name] = await request.read()
            return web.json_response({"ok": True, "id": name}, status=201)
        if name not in self.stored and request.method in ("GET", "HEAD"):
            return web.json_response({"name": name, "padding": "x" * 2000})
        return web.json_response({"name": name, "body": self.stored.get(name, b"").decode()})

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in (b'{"parts": [', b'"one", ', b'"two"]}'):
            await response.write(piece)
        await response.write_eof()
        return response

    async def longpoll(self, request: web.Request) -> web.StreamResponse:
        """As CouchDB answers a long poll: the head at once, the body when something changed."""
        self._seen(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await self.changes.wait()
        self.changes_sent_at = time.monotonic()
        await response.write(b'{"results": [{"id": "a"}], "last_seq": "1"}')
        await response.write_eof()
        return response

    async def empty(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(status=204)

    async def __aenter__(self) -> Origin:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def origin():
    async with Origin() as server:
        yield server


@pytest.fixture
async def proxy(origin):
    async with FaultProxy("127.0.0.1", origin.port, seed=7) as running:
        yield running


@pytest.fixture
async def client():
    """One keep-alive connection at a time: every request goes over the same one."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        yield session


async def fetch(session, method: str, url: str, **kwargs) -> tuple[int, bytes]:
    async with session.request(method, url, **kwargs) as resp:
        return resp.status, await resp.read()


async def raw_exchange(port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def test_keep_alive_traffic_passes_unchanged_and_is_recorded(origin, proxy, client):
    async def chunks():
        yield b"chunked "
        yield b"request body"

    base = proxy.url
    assert await fetch(client, "PUT", f"{base}/items/a", data=b"plain body") == (201, b'{"ok": true, "id": "a"}')
    assert await fetch(client, "PUT", f"{base}/items/b", data=chunks()) == (201, b'{"ok": true, "id": "b"}')
    for _ in range(3):
        status, body = await fetch(client, "GET", f"{base}/items/a")
        assert status == 200 and orjson.loads(body) == {"name": "a", "body": "plain body"}
        assert orjson.loads((await fetch(client, "GET", f"{base}/items/b"))[1])["body"] == "chunked request body"
        assert await fetch(client, "GET", f"{base}/chunked") == (200, b'{"parts": ["one", "two"]}')
        assert await fetch(client, "HEAD", f"{base}/items/zz") == (200, b"")
        assert await fetch(client, "GET", f"{base}/empty") == (204, b"")
        assert len(orjson.loads((await fetch(client, "GET", f"{base}/items/big?x=1"))[1])["padding"]) == 2000
    assert len(origin.asked) == 2 + 3 * 6
    assert len(origin.peers) == 1 and proxy.accepted == 1  # one connection, kept alive throughout
    assert [(e.method, e.path, e.query, e.status, e.delivered) for e in proxy.exchanges[:3]] == [
        ("PUT", "/items/a", "", 201, True),
        ("PUT", "/items/b", "", 201, True),
        ("GET", "/items/a", "", 200, True),
    ]
    assert all(e.action is None and e.forwarded and e.received <= e.answered <= e.finished for e in proxy.exchanges)
    assert len(proxy.seen("GET", r"^/items/big$", query="x=1")) == 3


async def test_delay_applies_to_the_chosen_request_only(proxy, client):
    rule = proxy.rule("delay", "GET", r"/items/slow$", times=1, seconds=0.4)
    await fetch(client, "GET", f"{proxy.url}/items/fast")
    started = time.monotonic()
    assert (await fetch(client, "GET", f"{proxy.url}/items/slow"))[0] == 200
    assert time.monotonic() - started >= 0.4
    await fetch(client, "GET", f"{proxy.url}/items/slow")  # times=1: no longer delayed
    assert [e.action for e in proxy.exchanges] == [None, "delay", None] and rule.applied == 1


async def test_hold_keeps_one_answer_until_released(origin, proxy, client):
    rule = proxy.rule("hold", "PUT", r"^/items/held$")
    held = asyncio.create_task(fetch(client, "PUT", f"{proxy.url}/items/held", data=b"v1"))
    await rule.reached(1)
    await until(lambda: _true(origin.stored.get("held") == b"v1"), "the held request reached the server")
    async with aiohttp.ClientSession() as other:  # another connection is not held
        assert (await fetch(other, "GET", f"{proxy.url}/items/held"))[0] == 200
    assert not held.done()
    [exchange] = proxy.seen("PUT")
    assert exchange.status == 201 and not exchange.delivered  # answered by the server, kept by the proxy
    rule.release()
    assert await held == (201, b'{"ok": true, "id": "held"}')
    assert exchange.delivered


async def test_drop_forwards_the_request_and_loses_the_answer(origin, proxy, client):
    proxy.rule("drop", "PUT", times=1)
    reader, writer = await raw_exchange(
        proxy.port, b"PUT /items/d HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nlanded"
    )
    assert await reader.read() == b""  # closed (FIN), nothing answered
    writer.close()
    assert origin.stored["d"] == b"landed"
    [exchange] = proxy.seen("PUT")
    assert (exchange.action, exchange.status, exchange.delivered) == ("drop", 201, False)
    # aiohttp sends an idempotent request (PUT, DELETE, GET) once more on a new connection
    # when the first one closes without an answer; a POST it does not
    proxy.rule("drop", "PUT", times=1)
    assert (await fetch(client, "PUT", f"{proxy.url}/items/d", data=b"again"))[0] == 201
    assert [e.delivered for e in proxy.seen("PUT")] == [False, False, True]
    proxy.rule("drop", "POST", times=1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await fetch(client, "POST", f"{proxy.url}/items/p", data=b"")
    assert origin.asked[-1] == "POST /items/p"


async def test_refuse_closes_before_forwarding(origin, proxy):
    proxy.rule("refuse", "PUT", r"/items/r$", times=1)
    reader, writer = await raw_exchange(proxy.port, b"PUT /items/r HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nno")
    assert await reader.read() == b""  # closed, nothing answered
    writer.close()
    assert "r" not in origin.stored and origin.asked == []
    [exchange] = proxy.exchanges
    assert exchange.action == "refuse" and not exchange.forwarded and exchange.status is None


async def test_reset_forwards_and_resets_the_connection(origin, proxy):
    proxy.rule("reset", "PUT", times=1)
    reader, writer = await raw_exchange(proxy.port, b"PUT /items/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nrst")
    with pytest.raises(ConnectionResetError):
        await reader.read()
    writer.close()
    assert origin.stored["x"] == b"rst" and proxy.exchanges[0].status == 201


async def test_hang_never_answers_and_keeps_the_connection_open(origin, proxy):
    proxy.rule("hang", "GET", r"^/_changes$", query="feed=longpoll")
    origin.changes.set()
    reader, writer = await raw_exchange(proxy.port, b"GET /_changes?feed=longpoll HTTP/1.1\r\nHost: x\r\n\r\n")
    await until(lambda: _true(proxy.exchanges and proxy.exchanges[0].answered), "the server answered")
    with pytest.raises(TimeoutError):  # neither an answer nor the end of the connection
        await asyncio.wait_for(reader.read(1), 0.5)
    assert proxy.exchanges[0].status == 200 and not proxy.exchanges[0].delivered
    writer.close()


async def test_cut_sends_half_the_body_then_closes(proxy, client):
    proxy.rule("cut", "GET", r"/items/c$", times=1)
    reader, writer = await raw_exchange(proxy.port, b"GET /items/c HTTP/1.1\r\nHost: x\r\n\r\n")
    received = await reader.read()
    writer.close()
    head, _, partial = received.partition(b"\r\n\r\n")
    length = int(dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])["Content-Length"])
    assert head.startswith(b"HTTP/1.1 200") and 0 < len(partial) < length
    proxy.rule("cut", "GET", r"/items/c$", times=1)
    with pytest.raises(aiohttp.ClientPayloadError):
        await fetch(client, "GET", f"{proxy.url}/items/c")


async def test_times_query_and_method_choose_the_requests(proxy, client):
    rule = proxy.rule("delay", "GET", r"^/items/", query="pick=1", times=2, seconds=0.01)
    for url in ("/items/a?pick=1", "/items/a", "/items/a?pick=1&z=2", "/items/a?pick=1"):
        await fetch(client, "GET", proxy.url + url)
    await fetch(client, "PUT", f"{proxy.url}/items/a?pick=1", data=b"")
    assert [e.action for e in proxy.exchanges] == ["delay", None, "delay", None, None]
    assert rule.applied == 2 and rule.exhausted


async def refused_with(seed: int, origin) -> list[int]:
    """Which of 100 POSTs (never resent by aiohttp) a rule with probability 0.3 refuses."""
    async with FaultProxy("127.0.0.1", origin.port, seed=seed) as proxy:
        proxy.rule("refuse", "POST", probability=0.3)
        refused = []
        async with aiohttp.ClientSession() as session:
            for i in range(100):
                try:
                    await fetch(session, "POST", f"{proxy.url}/items/{i}")
                except aiohttp.ClientError:
                    refused.append(i)
        assert [e.action is not None for e in proxy.exchanges] == [i in refused for i in range(100)]
        return refused


async def test_probability_is_drawn_from_the_seed(origin):
    first = await refused_with(3, origin)
    assert 10 <= len(first) <= 60
    assert await refused_with(3, origin) == first
    assert await refused_with(4, origin) != first


async def test_down_refuses_and_closes_everything_then_up_serves_on_the_same_port(origin, proxy, client):
    assert (await fetch(client, "GET", f"{proxy.url}/items/a"))[0] == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await until(lambda: _true(proxy.connections == 2), "both connections are open")
    port = proxy.port
    await proxy.down()
    assert await reader.read() == b""  # the open connection was closed
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(aiohttp.ClientError):
        await fetch(client, "GET", f"{proxy.url}/items/a")
    assert proxy.connections == 0
    await proxy.up()
    assert proxy.port == port and (await fetch(client, "GET", f"{proxy.url}/items/a"))[0] == 200


async def test_global_delay_is_latency_on_every_byte_of_a_long_poll(origin, proxy, client):
    """The long poll's head comes at once, its body later: the body too comes late."""
    proxy.delay = 0.5
    poll = asyncio.create_task(fetch(client, "GET", f"{proxy.url}/_changes?feed=longpoll"))
    await until(lambda: _true(origin.asked), "the long poll reached the server")
    await asyncio.sleep(0.7)  # the head has long been passed on; only the body is missing
    origin.changes.set()
    status, body = await poll
    received = time.monotonic()
    assert status == 200 and orjson.loads(body)["last_seq"] == "1"
    assert received - origin.changes_sent_at >= 0.5


async def test_bytes_sent_unasked_close_the_connection_and_are_recorded():
    """A server that answers one request twice (CouchDB did, with nodes going down): the
    stray answer must not be passed on as the answer to the next request."""

    async def twice(reader, writer):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nstray")
            await writer.drain()

    server = await asyncio.start_server(twice, "127.0.0.1", 0)
    async with server, FaultProxy("127.0.0.1", server.sockets[0].getsockname()[1]) as proxy:
        reader, writer = await raw_exchange(proxy.port, b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await reader.read() == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # then closed
        writer.close()
        [(_, stray)] = proxy.strays
        assert stray == b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nstray"
        async with aiohttp.ClientSession() as session:
            assert await fetch(session, "GET", f"{proxy.url}/two") == (200, b"ok")


async def _true(value) -> bool:
    return bool(value)
