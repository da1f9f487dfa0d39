"""Transport conformance, part 2: every transport that opens connections against a tiny
scripted server on loopback (tests/transports.py): refused, hanging and silent servers,
answers cut short or garbled, the wire format, framing (chunked, HEAD, 304, until
close), pool limits and expiry, cancellation, TLS. No CouchDB needed."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time

import pytest
from support import dead_port
from transports import KINDS, ScriptedServer, answer_with, chunk, full_backlog, header, reply, self_signed

from data_service.couchdb import TLS, ConnectFailed, Limits, Request, Timeout, Timeouts, Unavailable

GET = Request("GET", "/db/doc")


def seam_error(caught) -> str:
    """The error's class as the client sees it: ConnectFailed, Timeout or Unavailable."""
    return type(caught.value).__name__


async def hang(request, writer) -> bool:
    await asyncio.Event().wait()
    return False


async def test_refused_is_connect_failed(network_kind, opened):
    transport = opened(network_kind, f"http://127.0.0.1:{dead_port()}")
    with pytest.raises(ConnectFailed):
        await transport.handle(GET)


async def test_a_connect_that_hangs_is_connect_failed_after_the_connect_timeout(network_kind, opened):
    with full_backlog() as port:
        transport = opened(network_kind, f"http://127.0.0.1:{port}", timeouts=Timeouts(connect=0.3, request=20))
        started = time.monotonic()
        with pytest.raises(ConnectFailed):
            await transport.handle(GET)
        assert time.monotonic() - started < 10  # the connect limit, not the request's 20 s


async def test_a_server_that_never_answers_is_a_timeout_by_the_requests_own_limit(network_kind, opened):
    async with ScriptedServer(hang) as server:
        transport = opened(network_kind, server.url, timeouts=Timeouts(request=30))
        started = time.monotonic()
        with pytest.raises(Timeout):
            await transport.handle(Request("GET", "/db/doc", timeout=0.3))
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "cut",
    [
        reply(b'{"a":1}', headers={"Content-Length": "100"}),  # fewer bytes than announced
        reply(b"", headers={"Transfer-Encoding": "chunked"}) + chunk(b'{"rows":['),  # no last chunk
        b"HTTP/1.1 200 OK\r\nContent-Len",  # inside the head
        b"",  # nothing at all
        b"SMTP ready\r\n\r\n",  # not HTTP
    ],
    ids=["content-length", "chunked", "head", "nothing", "garbage"],
)
async def test_an_answer_cut_short_or_garbled_is_unavailable(network_kind, opened, cut):
    async def answer(request, writer) -> bool:
        writer.write(cut)
        return False

    async with ScriptedServer(answer) as server:
        transport = opened(network_kind, server.url)
        with pytest.raises(Unavailable) as caught:
            await transport.handle(GET)
        assert seam_error(caught) == "Unavailable"


async def test_the_request_on_the_wire(network_kind, opened):
    async with ScriptedServer(answer_with()) as server:
        transport = opened(network_kind, server.url.replace("http://", "http://ad%40min:p%3Ass@"))
        body = b'{"name":"\xc3\xa9"}'
        params = (("w", "2"), ("key", '"x y"'))
        await transport.handle(Request("PUT", "/db/a%2Fb", params, body, {"X-Couch-Request-ID": "r1"}))
        await transport.handle(Request("GET", "/db/_all_docs"))
        await transport.handle(Request("POST", "/db/_compact"))
    put, get, post = server.received
    assert (put.method, put.target, put.body) == ("PUT", "/db/a%2Fb?w=2&key=%22x%20y%22", body)
    assert put.headers["host"] == server.url.removeprefix("http://")
    assert put.headers["authorization"] == "Basic " + base64.b64encode(b"ad@min:p:ss").decode()
    assert (put.headers["content-type"], put.headers["content-length"]) == ("application/json", str(len(body)))
    assert put.headers["x-couch-request-id"] == "r1"
    assert put.headers["accept"] == "application/json"
    assert "gzip" not in put.headers.get("accept-encoding", "")
    assert (get.method, get.body, "content-length" in get.headers) == ("GET", b"", False)
    assert (post.method, post.headers["content-length"]) == ("POST", "0")
    assert {put.connection, get.connection, post.connection} == {1}


async def test_framings_on_one_connection(network_kind, opened):
    """Chunked in small pieces, HEAD announcing a length it does not send, 304 without a
    length, an empty 200: each answer read whole, the next one on the same connection."""

    async def answer(request, writer) -> bool:
        if request.target == "/chunked":
            writer.write(reply(headers={"Transfer-Encoding": "chunked"}))
            for piece in (b'{"rows":[', b"1,", b"2", b"]}", b""):
                writer.write(chunk(piece))
                await writer.drain()
        elif request.target == "/head":
            writer.write(reply(headers={"Content-Length": "5000"}))
        elif request.target == "/304":
            writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "1-a"\r\n\r\n')
        else:
            writer.write(reply(b""))
        return True

    async with ScriptedServer(answer) as server:
        transport = opened(network_kind, server.url)
        for _ in range(2):
            assert (await transport.handle(Request("GET", "/chunked"))).json() == {"rows": [1, 2]}
            head = await transport.handle(Request("HEAD", "/head"))
            assert (head.status, head.body) == (200, b"")
            gone = await transport.handle(Request("GET", "/304"))
            assert (gone.status, gone.body, header(gone, "ETag")) == (304, b"", '"1-a"')
            assert (await transport.handle(Request("GET", "/empty"))).body == b""
    assert server.accepted == 1


async def test_an_answer_that_ends_with_the_connection(network_kind, opened):
    async def answer(request, writer) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"until":"close"}')
        return False

    async with ScriptedServer(answer) as server:
        transport = opened(network_kind, server.url)
        assert (await transport.handle(GET)).json() == {"until": "close"}
        assert (await transport.handle(GET)).json() == {"until": "close"}
    assert server.accepted == 2


async def test_connection_close_is_honoured(network_kind, opened):
    async def answer(request, writer) -> bool:
        writer.write(reply(b"{}", headers={"Connection": "close"}))
        return True  # the client must not send again on it anyway

    async with ScriptedServer(answer) as server:
        transport = opened(network_kind, server.url)
        for _ in range(3):
            assert (await transport.handle(GET)).status == 200
    assert [r.connection for r in server.received] == [1, 2, 3]


async def test_the_pool_never_opens_more_than_its_limit(network_kind, opened):
    async def slowly(request, writer) -> bool:
        await asyncio.sleep(0.02)
        writer.write(reply(b"{}"))
        return True

    async with ScriptedServer(slowly) as server:
        transport = opened(network_kind, server.url, limits=Limits(max_connections=3))
        answers = await asyncio.gather(*(transport.handle(GET) for _ in range(30)))
    assert [a.status for a in answers] == [200] * 30
    assert server.peak == 3
    assert server.accepted == 3


async def test_idle_connections_expire(network_kind, opened):
    async with ScriptedServer(answer_with()) as server:
        transport = opened(network_kind, server.url, limits=Limits(keepalive_expiry=0.2))
        await transport.handle(GET)
        await transport.handle(GET)
        await asyncio.sleep(0.6)  # the passage of time is what is tested
        await transport.handle(GET)
    assert [r.connection for r in server.received] == [1, 1, 2]


class Gate:
    """A server whose answers to /slow wait until ``open()``; the rest answer at once."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.opened = asyncio.Event()

    async def __call__(self, request, writer) -> bool:
        if request.target == "/slow":
            self.arrived.set()
            await self.opened.wait()
        writer.write(reply(request.target.encode()))
        return True


async def test_a_cancelled_request_does_not_leave_its_answer_to_the_next(network_kind, opened):
    gate = Gate()
    async with ScriptedServer(gate) as server:
        transport = opened(network_kind, server.url, limits=Limits(max_connections=1))
        slow = asyncio.create_task(transport.handle(Request("GET", "/slow")))
        await gate.arrived.wait()
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        gate.opened.set()
        fast = await asyncio.wait_for(transport.handle(Request("GET", "/fast")), 10)
        assert fast.body == b"/fast"
        assert (await transport.handle(Request("GET", "/again"))).body == b"/again"


async def test_waiting_for_a_free_connection_is_bounded_and_cancellable(network_kind, opened):
    gate = Gate()
    async with ScriptedServer(gate) as server:
        transport = opened(network_kind, server.url, limits=Limits(max_connections=1))
        slow = asyncio.create_task(transport.handle(Request("GET", "/slow", timeout=20)))
        await gate.arrived.wait()
        with pytest.raises(Timeout):
            await transport.handle(Request("GET", "/waits", timeout=0.3))
        waiting = asyncio.create_task(transport.handle(Request("GET", "/waits")))
        await asyncio.sleep(0.05)  # let it take its place in line (nothing to observe from outside)
        waiting.cancel()
        gate.opened.set()
        assert (await slow).body == b"/slow"
        assert (await asyncio.wait_for(transport.handle(Request("GET", "/next")), 10)).body == b"/next"
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert server.accepted == 1


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.network and kind.incremental], ids=lambda k: k.name)
async def test_a_stream_sees_each_piece_as_it_comes_and_leaving_early_drops_the_connection(kind, opened):
    more = asyncio.Event()

    async def answer(request, writer) -> bool:
        if request.target == "/plain":
            writer.write(reply(b"plain"))
            return True
        writer.write(reply(headers={"Transfer-Encoding": "chunked"}) + chunk(b"one\n"))
        await writer.drain()
        await more.wait()
        writer.write(chunk(b"two\nthr") + chunk(b"ee\n"))
        await writer.drain()
        await asyncio.Event().wait()  # never ends
        return False

    async with ScriptedServer(answer) as server:
        transport = opened(kind, server.url, limits=Limits(max_connections=1))
        async with transport.stream(Request("GET", "/feed")) as streamed:
            assert streamed.status == 200
            lines = streamed.lines()
            assert await asyncio.wait_for(anext(lines), 10) == b"one"
            more.set()
            assert [await anext(lines), await anext(lines)] == [b"two", b"three"]
        assert (await transport.handle(Request("GET", "/plain"))).body == b"plain"
    assert [r.connection for r in server.received] == [1, 2]


async def test_a_silent_stream_times_out_at_the_requests_limit(network_kind, opened):
    async def answer(request, writer) -> bool:
        writer.write(reply(headers={"Transfer-Encoding": "chunked"}) + chunk(b"\n"))
        await asyncio.Event().wait()
        return False

    async with ScriptedServer(answer) as server:
        transport = opened(network_kind, server.url)
        async with transport.stream(Request("GET", "/feed", timeout=0.5)) as streamed:
            with pytest.raises(Timeout):
                async for _ in streamed.chunks:
                    pass


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


async def test_tls_with_a_ca_file_without_one_and_unverified(network_kind, opened, certificate):
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with ScriptedServer(answer_with(b'{"tls":true}'), tls=server_tls) as server:
        trusted = opened(network_kind, server.url, tls=TLS(ca_file=str(cert)))
        assert (await trusted.handle(GET)).json() == {"tls": True}
        assert (await trusted.handle(GET)).json() == {"tls": True}
        with pytest.raises(ConnectFailed):
            await opened(network_kind, server.url).handle(GET)  # the system CAs do not know it
        unverified = opened(network_kind, server.url, tls=TLS(verify=False))
        assert (await unverified.handle(GET)).json() == {"tls": True}
    assert [r.connection for r in server.received] == [1, 1, 2]  # a refused handshake never reaches the script


async def test_an_answer_nobody_asked_for_is_never_taken_for_the_next(network_kind, opened):
    async def answer(request, writer) -> bool:
        writer.write(reply(request.target.encode()) + reply(b"/unasked"))
        return True

    async with ScriptedServer(answer) as server:
        transport = opened(network_kind, server.url)
        assert (await transport.handle(Request("GET", "/first"))).body == b"/first"
        assert (await transport.handle(Request("GET", "/second"))).body == b"/second"


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind.network and kind.incremental], ids=lambda k: k.name)
async def test_a_stream_read_slowly_gets_its_whole_body(kind, opened):
    """More than the transport buffers arrives before the reader starts: reading pauses
    and resumes, nothing is lost."""
    piece = bytes(range(256)) * 256  # 64 KiB
    written = asyncio.Event()

    async def answer(request, writer) -> bool:
        writer.write(reply(headers={"Transfer-Encoding": "chunked"}))
        for _ in range(64):
            writer.write(chunk(piece))
        writer.write(chunk(b""))
        written.set()
        return True

    async with ScriptedServer(answer) as server:
        transport = opened(kind, server.url)
        async with transport.stream(Request("GET", "/big", timeout=20)) as streamed:
            await written.wait()
            await asyncio.sleep(0.2)  # let the answer pile up (nothing to observe from outside)
            body = b"".join([data async for data in streamed.chunks])
        assert body == piece * 64
        assert (await transport.handle(Request("GET", "/big"))).body == piece * 64
