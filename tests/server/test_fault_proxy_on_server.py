"""TODO docstring."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from faults import FaultProxy
from support import unique_name, until

from data_service.couchdb import Conflict, CouchDB, NotFound
from data_service.couchdb.client import split_credentials
from data_service.couchdb.transport import path


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


async def _true(value) -> bool:
    return bool(value)


async def test_through_the_server_under_test(couchdb_url):
    """A dropped answer to a PUT on the real server: the CouchDB client retries, and the
    retry finds the first attempt stored (409); a held long poll answers once released."""
    async with CouchDB(couchdb_url) as admin:
        db = admin.database(unique_name())
        await db.create()
        try:
            async with FaultProxy.to(couchdb_url) as proxy:
                async with CouchDB(proxy.url, auth=split_credentials(couchdb_url)[1]) as through:
                    docpath = path(db.name, "doc1")
                    proxy.rule("drop", "PUT", f"^{docpath}$", times=1)
                    with pytest.raises(Conflict):  # the retry: the first attempt was stored
                        await through.request("PUT", docpath, json={"v": 1})
                    first, second = proxy.seen("PUT", f"^{docpath}$")
                    assert (first.action, first.status, first.delivered) == ("drop", 201, False)
                    assert (second.action, second.status, second.delivered) == (None, 409, True)
                    assert (await db.get("doc1"))["v"] == 1

                    hold = proxy.rule("hold", "GET", r"/_changes$", query="feed=longpoll")
                    feed = asyncio.create_task(
                        through.json("GET", path(db.name, "_changes"), params={"feed": "longpoll", "since": 0})
                    )
                    await hold.reached(1)
                    await until(lambda: _true(proxy.seen("GET", "/_changes$")[0].answered), "the server answered")
                    assert not feed.done()
                    hold.release()
                    assert [row["id"] for row in (await feed)["results"]] == ["doc1"]
        finally:
            await db.drop(missing_ok=True)
    with pytest.raises(NotFound):
        async with CouchDB(couchdb_url) as admin:
            await admin.database(db.name).info()
