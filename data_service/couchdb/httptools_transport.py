"""The lean transport: HTTP/1.1 on asyncio protocols, responses parsed by llhttp (httptools).

One ``_Connection`` (an ``asyncio.Protocol``) carries one exchange at a time; the
``_Pool`` (``httptools_pool.py``) keeps them alive between requests. The request head
is one f-string over a prefix built once (Host, Accept, Authorization); a response's
headers land in one dict, its body in a list joined once. One timer per exchange
enforces the request's whole time limit. Never retries, never reads statuses: a
connection that did not finish its exchange cleanly (timeout, cancellation, a lost or
garbled answer) is closed, never reused. docs/couchdb-client.md has the design.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpResponseParser

from .errors import Timeout, Unavailable
from .httptools_pool import Pool, PooledConnection
from .transport import TLS, AsyncTransport, Limits, Request, Response, Streamed, Timeouts, basic_auth

# Requests without a body that still say so (what aiohttp and curl send too).
_NO_LENGTH = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})
# A streamed body buffered beyond this pauses reading from the socket until it is read.
_STREAM_HIGH_WATER = 1 << 20


class HttptoolsTransport(AsyncTransport):
    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(),
        tls: TLS = TLS(),
    ) -> None:
        parts = urlsplit(base_url)
        host = parts.hostname or "127.0.0.1"
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        self._prefix = parts.path.rstrip("/")  # CouchDB behind a proxy under a path
        netloc = f"[{host}]" if ":" in host else host
        fixed = f"Host: {netloc}:{port}\r\nAccept: application/json\r\n"
        if auth:
            fixed += f"Authorization: {basic_auth(auth)}\r\n"
        self._fixed = fixed
        self._timeouts = timeouts
        context = tls.ssl_context() if https else None
        self._pools = {  # by Request.long_poll: a pool each, so requests never queue behind long polls
            long_poll: self._new_pool(host, port, context, replace(limits, max_connections=size))
            for long_poll, size in ((False, limits.max_connections), (True, limits.max_long_polls))
        }

    def _new_pool(self, host: str, port: int, context: ssl.SSLContext | None, limits: Limits) -> Pool[_Connection]:
        pool: Pool[_Connection] = Pool(
            lambda: _Connection(pool.loop), host, port, context, self._timeouts.connect, limits
        )
        return pool

    async def handle(self, request: Request) -> Response:
        data, pool = self._wire(request), self._pools[request.long_poll]
        deadline = pool.now() + (request.timeout or self._timeouts.request)
        conn = await pool.acquire(request, deadline)
        try:
            conn.send(request, data, deadline, streaming=False)
            return await conn.response()
        finally:
            pool.release(conn)

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[Streamed]:
        data, pool = self._wire(request), self._pools[request.long_poll]
        deadline = pool.now() + (request.timeout or self._timeouts.request)
        conn = await pool.acquire(request, deadline)
        try:
            conn.send(request, data, deadline, streaming=True)
            status, headers = await conn.head()
            yield Streamed(status, headers, conn.chunks())
        finally:
            pool.release(conn)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()

    def _wire(self, request: Request) -> bytes:
        """The request as it goes on the wire: one head string, the body appended."""
        method, body, headers, target = request.method, request.body, request.headers, request.target
        extra = ""
        if headers:
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            if extra.count("\r") != len(headers) or extra.count("\n") != len(headers):
                raise ValueError("a CR or LF inside a CouchDB request header")
        if "\r" in target or "\n" in target or " " in target:
            raise ValueError("a CouchDB request target must be percent-encoded")
        if body is None:
            length = "" if method in _NO_LENGTH else "Content-Length: 0\r\n"
        else:
            length = f"Content-Length: {len(body)}\r\n"
            if not any(name.lower() == "content-type" for name in headers):
                length += "Content-Type: application/json\r\n"
        head = f"{method} {self._prefix}{target} HTTP/1.1\r\n{self._fixed}{extra}{length}\r\n".encode()
        return head + body if body else head


class _Connection(PooledConnection):
    """One keep-alive connection and the parser of its answers. ``reusable`` is true only
    between an exchange that ended cleanly on a keep-alive answer and the next ``send``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self._request: Request | None = None
        self._streaming = False
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._head_done = False
        self._done = False
        self._error: Unavailable | None = None
        self._waiter: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._new_parser = False

    # -- the exchange, as the transport drives it ------------------------------

    def send(self, request: Request, data: bytes, deadline: float, streaming: bool) -> None:
        self._request, self._streaming = request, streaming
        self._status, self._headers, self._body, self._buffered = 0, {}, [], 0
        self._head_done = self._done = self.reusable = False
        self._error = None
        self._timer = self.loop.call_at(deadline, self._expire)
        assert self.transport is not None
        if self._paused:  # a stream left at its end with reading paused
            self._paused = False
            self.transport.resume_reading()
        self.transport.write(data)

    async def response(self) -> Response:
        while not self._done:
            if self._error is not None:
                raise self._error
            await self._wait()
        body, self._body = self._body, []  # an idle connection holds no answer
        return Response(self._status, body[0] if len(body) == 1 else b"".join(body), self._headers)

    async def head(self) -> tuple[int, dict[str, str]]:
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._status, self._headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; what came before an error is yielded first."""
        body = self._body
        while True:
            if body is not self._body:  # the connection went on to another exchange
                raise RuntimeError("a stream read after its block ended")
            if body:
                chunk = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                yield chunk
            elif self._done:
                return
            elif self._error is not None:
                raise self._error
            else:
                await self._wait()

    async def _wait(self) -> None:
        self._waiter = waiter = self.loop.create_future()
        await waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _finish(self) -> None:
        self._done = True
        self._stop_timer()
        self.reusable = self.open and self.parser.should_keep_alive()
        self._request = None
        self._wake()

    def _fail(self, error: Unavailable) -> None:
        """End the exchange without a (whole) answer; the connection is not reused."""
        self._stop_timer()
        self.reusable = False
        if self._error is None:
            self._error = error
        self.close()
        self._wake()

    def _expire(self) -> None:
        self._timer = None
        request = self._request
        if request is not None and not self._done:
            self._fail(Timeout(request.method, request.path, reason="no response in time"))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.open = self.reusable = False
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()  # never a half-read answer left for someone else

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.open = True

    def data_received(self, data: bytes) -> None:
        if self._request is None:  # nothing asked: a server talking out of turn
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except HttpParserError as exc:
            request = self._request
            if request is not None:
                self._fail(Unavailable(request.method, request.path, reason=f"unreadable answer: {type(exc).__name__}"))
            else:
                self.close()
        if self._new_parser:  # after a HEAD answer, which the parser would read a body for
            self.parser, self._new_parser = HttpResponseParser(self), False

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost decides what the exchange got

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = self.reusable = False
        request = self._request
        if request is None or self._done:
            return
        if self._head_done and self._ends_at_close():
            self._finish()
        else:
            self._fail(Unavailable(request.method, request.path, reason="connection lost before the whole answer"))

    def _ends_at_close(self) -> bool:
        """An answer without Content-Length or chunked encoding ends when the connection does."""
        return not any(name.lower() in ("content-length", "transfer-encoding") for name in self._headers)

    # -- llhttp callbacks -----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._done:
            raise HttpParserError("an answer nobody asked for")
        self._headers[name.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        if self._status < 200:
            return  # 1xx: the real answer follows
        self._head_done = True
        if self._request is not None and self._request.method == "HEAD":
            self._new_parser = True
            self._finish()
        elif self._streaming:
            self._wake()

    def on_body(self, chunk: bytes) -> None:
        if self._done:
            raise HttpParserError("an answer nobody asked for")
        self._body.append(chunk)
        if self._streaming:
            self._buffered += len(chunk)
            if self._buffered > _STREAM_HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if self._status < 200:
            self._headers = {}
            return
        if not self._done:
            self._finish()
