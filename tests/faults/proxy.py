"""A TCP proxy between a sidecar and CouchDB that reads HTTP/1.1 framing, so a fault hits
the answer of one chosen request on a keep-alive connection.

Each client connection gets its own connection to the target. Requests are passed on as
they come; a rule chosen when a request arrives decides what happens to its answer:

| action   | the request reaches CouchDB | the client gets                                      |
|----------|-----------------------------|------------------------------------------------------|
| `delay`  | yes                         | the answer, every byte ``seconds`` later             |
| `hold`   | yes                         | the answer once the test calls ``rule.release()``    |
| `drop`   | yes                         | nothing: the connection is closed (FIN)              |
| `reset`  | yes                         | nothing: the connection is reset (RST)               |
| `refuse` | no                          | nothing: the connection is closed before forwarding  |
| `hang`   | yes                         | nothing, ever; the connection stays open             |
| `cut`    | yes                         | the status line, headers and half the body; closed   |

``delay`` (the attribute) adds latency to every answer byte; ``down()`` stops listening
and closes every connection (connecting is refused), ``up()`` listens again on the same
port. ``exchanges`` records every request: method, target, rule applied, CouchDB's status,
times (``time.monotonic()``), whether the answer was passed on whole; ``strays`` what the
target sent while no request was due (that connection is closed, as a client would).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .http import UNTIL_CLOSE, FramingError, Head, Request, Response, body, read_head

ACTIONS = ("delay", "hold", "drop", "reset", "refuse", "hang", "cut")
LINK_ERRORS = (ConnectionError, OSError, FramingError, asyncio.IncompleteReadError)


@dataclass(eq=False)
class Rule:
    """Matches a request line: ``method`` exactly, ``path`` (a regex) searched in the path,
    ``query`` a substring of the query string; None matches anything. It applies to the next
    ``times`` matches (None: every one), each with ``probability`` (drawn from the proxy's
    seeded generator)."""

    action: str
    method: str | None = None
    path: re.Pattern[str] | None = None
    query: str | None = None
    times: int | None = None
    probability: float = 1.0
    seconds: float = 0.0
    applied: int = 0
    _gate: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def matches(self, request: Request | Exchange) -> bool:
        return (
            (self.method is None or request.method == self.method)
            and (self.path is None or self.path.search(request.path) is not None)
            and (self.query is None or self.query in request.query)
        )

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def release(self) -> None:
        """Let every answer this ``hold`` rule holds (and will hold) go."""
        self._gate.set()

    async def reached(self, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until the rule has applied to ``count`` requests."""
        async with asyncio.timeout(timeout):
            while self.applied < count:
                self._changed.clear()
                await self._changed.wait()

    def _apply(self) -> None:
        self.applied += 1
        self._changed.set()


@dataclass(eq=False)
class Exchange:
    """One request that came through, and what became of its answer."""

    method: str
    path: str
    query: str
    action: str | None
    received: float
    forwarded: bool = False
    status: int | None = None  # CouchDB's answer, passed on or not
    answered: float | None = None  # when CouchDB's answer head came
    finished: float | None = None  # when the answer was passed on, or lost
    delivered: bool = False  # passed on whole


class FaultProxy:
    """``FaultProxy(host, port)``, or ``FaultProxy.to(url)``; ``async with`` or
    ``start()`` / ``close()``. ``url`` is where clients connect."""

    def __init__(self, host: str, port: int, *, seed: int = 0, listen_port: int = 0) -> None:
        self.target = (host, port)
        self.port = listen_port
        self.delay = 0.0
        self.exchanges: list[Exchange] = []
        self.strays: list[tuple[float, bytes]] = []  # bytes the target sent unasked, and when
        self.accepted = 0  # client connections accepted
        self._rules: list[Rule] = []
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    @classmethod
    def to(cls, url: str, **options) -> FaultProxy:
        """A proxy to the host and port of ``url`` (credentials in it are ignored)."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, **options)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        await self.up()

    async def close(self) -> None:
        self.clear()
        await self.down()

    # -- the link as a whole --------------------------------------------------------

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return len(self._links)

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def up(self) -> None:
        """Listen (again, on the same port)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Stop listening (connecting is refused) and close every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self._links)
        for link in links:
            link.abort()
        await asyncio.gather(*(link.done.wait() for link in links))
        if server is not None:
            await server.wait_closed()

    # -- rules ------------------------------------------------------------------------

    def rule(
        self,
        action: str,
        method: str | None = None,
        path: str | None = None,
        *,
        query: str | None = None,
        times: int | None = None,
        probability: float = 1.0,
        seconds: float = 0.0,
    ) -> Rule:
        """Add a rule (checked after those added before it) and return it."""
        if action not in ACTIONS:
            raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
        if (action == "delay") != (seconds > 0):
            raise ValueError("seconds > 0 goes with the delay action, and only with it")
        if not 0 < probability <= 1:
            raise ValueError("probability is in (0, 1]")
        made = Rule(action, method, re.compile(path) if path else None, query, times, probability, seconds)
        self._rules.append(made)
        return made

    @property
    def rules(self) -> list[Rule]:
        """The rules in the order they are checked."""
        return list(self._rules)

    def remove(self, rule: Rule) -> None:
        """Stop applying ``rule``; what it holds is released."""
        rule.release()
        with contextlib.suppress(ValueError):
            self._rules.remove(rule)

    def clear(self) -> None:
        for rule in list(self._rules):
            self.remove(rule)

    def _choose(self, request: Request) -> Rule | None:
        for rule in self._rules:
            if rule.exhausted or not rule.matches(request):
                continue
            if rule.probability < 1 and self._random.random() >= rule.probability:
                continue
            rule._apply()
            return rule
        return None

    # -- records ----------------------------------------------------------------------

    def seen(self, method: str | None = None, path: str | None = None, *, query: str | None = None) -> list[Exchange]:
        """The requests that reached the target, matched as a rule matches them."""
        probe = Rule("seen", method, re.compile(path) if path else None, query)
        return [exchange for exchange in self.exchanges if exchange.forwarded and probe.matches(exchange)]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # went down while this connection was being accepted
            writer.close()
            return
        self.accepted += 1
        link = _Link(self, reader, writer)
        self._links.add(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)
            link.done.set()


class _Link:
    """One client connection and its connection to the target: a pump for requests, one
    for answers, a queue of the requests whose answers are due, in order."""

    def __init__(self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = reader, writer
        self.due: asyncio.Queue[tuple[Request, Exchange, Rule | None]] = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []
        self.upstream: asyncio.StreamWriter | None = None
        self.done = asyncio.Event()  # set once both its connections are closed

    async def run(self) -> None:
        try:
            upstream_reader, self.upstream = await asyncio.open_connection(*self.proxy.target)
        except OSError:
            _reset(self.client_writer)  # the target refused: so does the proxy
            return
        self.tasks = [
            asyncio.create_task(self._requests(self.upstream)),
            asyncio.create_task(self._answers(upstream_reader)),
        ]
        try:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.abort()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client_writer, self.upstream):
            if writer is not None:
                writer.close()

    async def _requests(self, upstream: asyncio.StreamWriter) -> None:
        with contextlib.suppress(*LINK_ERRORS):
            while (head := await read_head(self.client_reader)) is not None:
                request = Request(head)
                whole = head.raw + b"".join(
                    [piece async for piece in body(self.client_reader, request.framing(), head.length)]
                )
                rule = self.proxy._choose(request)
                exchange = Exchange(request.method, request.path, request.query, rule and rule.action, time.monotonic())
                self.proxy.exchanges.append(exchange)
                if rule is not None and rule.action == "refuse":
                    exchange.finished = time.monotonic()
                    return
                self.due.put_nowait((request, exchange, rule))  # before it is sent: see _next
                exchange.forwarded = True
                upstream.write(whole)
                await upstream.drain()

    async def _answers(self, upstream: asyncio.StreamReader) -> None:
        with contextlib.suppress(*LINK_ERRORS):
            while (due := await self._next(upstream)) is not None:
                (request, exchange, rule), first = due
                if not await self._answer(upstream, request, exchange, rule, first):
                    return

    async def _next(self, upstream: asyncio.StreamReader) -> tuple[tuple[Request, Exchange, Rule | None], bytes] | None:
        """The next request whose answer is due, and the answer's first byte if it came
        while waiting; None when the target closed the connection or sent bytes nobody
        asked for (a client would close such a connection too: it cannot tell which request
        they answer; ``strays`` records them). Requests are queued before they are sent, so
        a byte that arrives while the queue is empty answers nothing."""
        if not self.due.empty():
            return self.due.get_nowait(), b""
        asked, came = asyncio.create_task(self.due.get()), asyncio.create_task(upstream.read(1))
        try:
            await asyncio.wait((asked, came), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the link is closing
            asked.cancel()
            came.cancel()
            raise
        if not came.done():
            await _cancel(came)  # nothing was read: it is all still in the buffer
            return asked.result(), b""
        await _cancel(asked)  # an item it was woken for stays queued
        first = came.result()
        if asked.done() and not asked.cancelled():
            due = asked.result()
        elif not self.due.empty():
            due = self.due.get_nowait()
        else:
            if first:
                stray = first + await _available(upstream)
                self.proxy.strays.append((time.monotonic(), stray))
            return None
        return (due, first) if first else None

    async def _answer(
        self, upstream: asyncio.StreamReader, request: Request, exchange: Exchange, rule: Rule | None, first: bytes
    ) -> bool:
        """Pass on (or not) one answer; False when the connection is to end."""
        head = await read_head(upstream, first)
        while head is not None and Response(head).interim:
            self.client_writer.write(head.raw)
            head = await read_head(upstream)
        exchange.answered = arrived = time.monotonic()
        if head is None:  # the target closed the connection without answering
            exchange.finished = arrived
            return False
        response = Response(head)
        exchange.status = response.status
        framing = response.framing(request.method)
        pieces = body(upstream, framing, head.length)
        action = rule.action if rule else None
        if action == "hold":
            await rule._gate.wait()
        if action in ("drop", "reset", "cut", "hang"):
            return await self._lose(action, head, pieces, exchange)
        latency = self.proxy.delay + (rule.seconds if rule else 0.0)
        await self._send(head.raw, arrived, latency)
        async for piece in pieces:
            await self._send(piece, time.monotonic(), latency)
        exchange.finished, exchange.delivered = time.monotonic(), True
        return not (head.closes or request.head.closes or framing == UNTIL_CLOSE)

    async def _send(self, data: bytes, arrived: float, latency: float) -> None:
        """Pass ``data`` on ``latency`` seconds after it arrived (in order)."""
        wait = arrived + latency - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self.client_writer.write(data)
        await self.client_writer.drain()

    async def _lose(self, action: str, head: Head, pieces, exchange: Exchange) -> bool:
        if action == "hang":
            async for _ in pieces:  # read and forget; the client waits on
                pass
            await asyncio.Event().wait()  # until the link is closed
        if action == "cut":
            rest = b"".join([piece async for piece in pieces])
            self.client_writer.write(head.raw + rest[: len(rest) // 2] if rest else head.raw[: len(head.raw) // 2])
            await self.client_writer.drain()
        if action == "reset":
            _reset(self.client_writer)
        exchange.finished = time.monotonic()
        return False


async def _cancel(task: asyncio.Task) -> None:
    """Cancel ``task`` (if it is not done) and wait until it is."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _available(reader: asyncio.StreamReader) -> bytes:
    """What else arrives within a moment (for the record of stray bytes)."""
    try:
        return await asyncio.wait_for(reader.read(4096), 0.05)
    except TimeoutError:
        return b""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (RST), not the orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
