"""The CouchDB client against loopback servers that are stopped, silent or drop answers: quick
``Unavailable``, timeouts within the limit, only idempotent requests retried."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from support import dead_port

from data_service.couchdb import (
    ConnectFailed,
    CouchDB,
    Timeout,
    Timeouts,
    Unavailable,
)
from data_service.retry import RetryPolicy


async def test_stopped_server_is_unavailable_quickly():
    started = time.monotonic()
    async with CouchDB(f"http://127.0.0.1:{dead_port()}", retry=RetryPolicy(attempts=2, base=0.01)) as couch:
        with pytest.raises(ConnectFailed) as caught:
            await couch.database("db").info()
    assert isinstance(caught.value, (Unavailable, ConnectionError))
    assert time.monotonic() - started < 2


async def test_silent_server_times_out_within_the_limit():
    async def accept_and_say_nothing(reader, writer):
        await asyncio.sleep(30)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        async with CouchDB(
            f"http://127.0.0.1:{port}", timeouts=Timeouts(connect=1, request=0.5), retry=RetryPolicy(attempts=1)
        ) as couch:
            with pytest.raises(Timeout):
                await couch.database("db").info()
    finally:
        server.close()
    assert time.monotonic() - started < 3


async def test_only_idempotent_requests_are_retried_against_a_real_server():
    hits: dict[str, int] = {"GET": 0, "POST": 0, "PUT": 0}

    async def always_503(request: web.Request) -> web.Response:
        hits[request.method] += 1
        return web.json_response({"error": "unavailable"}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", always_503)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with CouchDB(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=3, base=0.01)) as couch:
            db = couch.database("db")
            for call in (db.info(), db.bulk_docs([{"_id": "a"}]), db.put({"_id": "a"})):
                with pytest.raises(Unavailable):
                    await call
    finally:
        await runner.cleanup()
    assert hits == {"GET": 3, "POST": 1, "PUT": 3}
