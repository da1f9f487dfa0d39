"""The lean transport's connection pool: at most ``max_connections`` open or opening,
the most recently used idle one taken first, idle ones closed after ``keepalive_expiry``,
requests beyond the limit waiting in line (bounded by their own deadline).

A connection comes back through ``release`` after every exchange, whatever happened;
only one that finished its exchange cleanly on a keep-alive answer (``reusable``) is
kept. A freed place goes to the first waiter: the connection itself, or leave to open
one. Bound to the event loop it is first used on (one pool per process, per loop).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ConnectFailed, Timeout
from .transport import Limits, Request


class PooledConnection(asyncio.Protocol):
    """What the pool needs of a connection."""

    open = False  # connected and not lost
    reusable = False  # its last exchange ended cleanly on a keep-alive answer
    idle_since = 0.0  # the loop's time when it came back
    generation = 0  # the pool's when it was opened

    def close(self) -> None:
        raise NotImplementedError


C = TypeVar("C", bound=PooledConnection)
OPEN = None  # what a waiter is handed instead of a connection: leave to open one


class Pool(Generic[C]):
    def __init__(
        self,
        connection: Callable[[], C],
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        connect_timeout: float,
        limits: Limits,
    ) -> None:
        self._connection = connection
        self._address = (host, port)
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._max = limits.max_connections
        self._expiry = limits.keepalive_expiry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: deque[C] = deque()  # oldest first
        self._waiters: deque[asyncio.Future[C | None]] = deque()
        self._size = 0  # connections open or opening, in use or idle
        self._generation = 0  # close() starts a new one: older connections are not kept
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def now(self) -> float:
        """The running loop's clock; a new loop (a new process, a test) starts a new pool."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._idle, self._waiters, self._size, self._sweeper = loop, deque(), deque(), 0, None
        return loop.time()

    async def acquire(self, request: Request, deadline: float) -> C:
        """A connection for ``request`` to send on: an idle one, a new one, or the next
        freed one; ``Timeout`` when none came by ``deadline``, ``ConnectFailed``."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.open and self.loop.time() - conn.idle_since < self._expiry:
                return conn
            self._drop(conn)
        if self._size < self._max:
            self._size += 1
        else:
            handed = await self._wait_turn(request, deadline)
            if handed is not OPEN:
                return handed
        try:
            return await self._open(request, deadline)
        except BaseException:
            self._size -= 1
            self._pass_on()
            raise

    def release(self, conn: C) -> None:
        """Take ``conn`` back after its exchange: kept when ``reusable``, else closed."""
        if not (conn.reusable and conn.open and conn.generation == self._generation):
            self._drop(conn)
            return
        conn.idle_since = self.loop.time()
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._expiry, self._sweep)

    def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        self._generation += 1
        while self._idle:
            self._drop(self._idle.pop())

    def _drop(self, conn: C) -> None:
        conn.close()
        self._size -= 1
        self._pass_on()

    def _pass_on(self) -> None:
        """A place is free: the first waiter may open a connection in it."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self._size += 1
                waiter.set_result(OPEN)
                return

    async def _wait_turn(self, request: Request, deadline: float) -> C | None:
        waiter: asyncio.Future[C | None] = self.loop.create_future()
        self._waiters.append(waiter)
        timer = self.loop.call_at(deadline, _expire, waiter, request)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())  # handed a place just as we were cancelled
            raise
        finally:
            timer.cancel()
            if waiter in self._waiters:  # timed out or cancelled while in line
                self._waiters.remove(waiter)

    def _give_back(self, handed: C | None) -> None:
        if handed is OPEN:
            self._size -= 1
            self._pass_on()
        else:
            self.release(handed)

    async def _open(self, request: Request, deadline: float) -> C:
        loop = self.loop
        conn = self._connection()
        conn.generation = self._generation
        limit = min(self._connect_timeout, deadline - loop.time())
        host, port = self._address
        try:
            async with asyncio.timeout(limit):
                await loop.create_connection(
                    lambda: conn, host, port, ssl=self._tls, server_hostname=host if self._tls else None
                )
        except TimeoutError:
            if limit < self._connect_timeout:  # the request's own time ran out first
                raise Timeout(request.method, request.path, reason="no response in time") from None
            raise ConnectFailed(request.method, request.path, reason="connect timed out") from None
        except OSError as exc:  # refused, unreachable, TLS handshake or certificate
            raise ConnectFailed(request.method, request.path, reason=type(exc).__name__) from None
        return conn

    def _sweep(self) -> None:
        """Close the connections idle longer than the expiry; look again while some are idle."""
        self._sweeper = None
        idle, oldest = self._idle, self.loop.time() - self._expiry
        while idle and (idle[0].idle_since <= oldest or not idle[0].open):
            self._drop(idle.popleft())
        if idle:
            self._sweeper = self.loop.call_at(idle[0].idle_since + self._expiry, self._sweep)


def _expire(waiter: asyncio.Future, request: Request) -> None:
    if not waiter.done():
        waiter.set_exception(Timeout(request.method, request.path, reason="no connection free in time"))
