"""The lean transport's pool where timing decides: a place handed to a waiter in the
same moment it is cancelled goes back to the pool, not lost. (The conformance tests
cover the rest through the transport.)"""

from __future__ import annotations

import asyncio

import pytest
from support import until
from transports import ScriptedServer, answer_with

from data_service.couchdb import Limits, Request
from data_service.couchdb.httptools_pool import Pool, PooledConnection

REQUEST = Request("GET", "/")


class Conn(PooledConnection):
    def connection_made(self, transport) -> None:
        self.transport, self.open = transport, True

    def close(self) -> None:
        self.open = False
        self.transport.abort()


async def one_place_taken(server):
    host, port = server.url.removeprefix("http://").split(":")
    pool: Pool[Conn] = Pool(Conn, host, int(port), None, 5.0, Limits(max_connections=1))
    deadline = pool.now() + 10
    held = await pool.acquire(REQUEST, deadline)
    waiting = asyncio.create_task(pool.acquire(REQUEST, deadline))

    async def in_line() -> bool:
        return len(pool._waiters) == 1

    await until(in_line, "the second acquire waits in line")
    return pool, held, waiting


@pytest.mark.parametrize("reusable", [True, False], ids=["connection", "leave-to-open"])
async def test_a_place_handed_to_a_waiter_cancelled_at_that_moment_goes_back(reusable):
    async with ScriptedServer(answer_with()) as server:
        pool, held, waiting = await one_place_taken(server)
        held.reusable = reusable
        pool.release(held)  # hands the waiter the connection, or leave to open one
        waiting.cancel()  # before it ran
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool._size == (1 if reusable else 0)
        again = await asyncio.wait_for(pool.acquire(REQUEST, pool.now() + 10), 5)
        assert (again is held) == reusable
        assert pool._size == 1
        pool.close()
        pool.release(again)
        assert pool._size == 0
