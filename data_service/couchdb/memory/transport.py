"""The in-memory CouchDB behind the client's transport seam, with faults tests inject."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConnectFailed, Timeout, Unavailable
from ..transport import AsyncTransport, Request, Response
from .endpoints import answer
from .server import MemoryServer

Matcher = Callable[[Request], bool]


def matching(method: str | None = None, path: str | None = None) -> Matcher:
    """Requests with this method (any if None) whose percent-encoded path matches the
    regular expression ``path`` in full (any if None)."""
    pattern = re.compile(path) if path is not None else None
    return lambda request: (
        (method is None or request.method == method)
        and (pattern is None or pattern.fullmatch(request.path) is not None)
    )


@dataclass
class Fault:
    """What happens to the requests ``matches`` accepts, ``times`` times (None: always).

    ``before``: awaited first, with the request (e.g. a racing write through another client
    of the same server). ``applied``: the server handles the request (a failure then loses
    its answer); otherwise it never sees it. ``after``: awaited once it was applied, before
    its answer goes (an answer held until a test releases it). ``delay``: seconds before
    the answer or the failure (a request ``timeout`` shorter than that is a ``Timeout``,
    applied or not).
    ``error``: raised instead of the answer. ``status``: the server's answer with this status
    (202: stored below its quorum), or, not applied, ``body`` (default ``{"error":
    "unavailable"}``): a canned answer, e.g. a view's rows. None of these: the answer is
    delivered. ``hits`` counts what it did."""

    matches: Matcher
    applied: bool = True
    delay: float = 0.0
    error: type[Unavailable] | None = None
    status: int | None = None
    times: int | None = 1
    before: Callable[[Request], Awaitable[object]] | None = None
    after: Callable[[Request], Awaitable[object]] | None = None
    body: Any = None
    hits: int = 0

    def __post_init__(self) -> None:
        if not self.applied and self.error is None and self.status is None:
            raise ValueError("a fault that does not apply the request must fail it (error or status)")

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times


class MemoryTransport(AsyncTransport):
    """Answers from a ``MemoryServer`` (its own, or one shared with other transports).

    ``faults`` are tried in order; the first that matches a request and is not spent
    decides its fate. With ``record``, every request is kept in ``requests``."""

    def __init__(self, server: MemoryServer | None = None, *, record: bool = False) -> None:
        self.server = server or MemoryServer()
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self._record = record

    def inject(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def lose_answer(self, matches: Matcher, times: int | None = 1) -> Fault:
        """The request is applied, its answer never comes (a ``Timeout``)."""
        return self.inject(Fault(matches, error=Timeout, times=times))

    def refuse(self, matches: Matcher, times: int | None = 1) -> Fault:
        """The request never reaches the server (``ConnectFailed``)."""
        return self.inject(Fault(matches, applied=False, error=ConnectFailed, times=times))

    def fail(self, matches: Matcher, status: int = 503, times: int | None = 1) -> Fault:
        """The server answers ``status`` without applying the request."""
        return self.inject(Fault(matches, applied=False, status=status, times=times))

    def below_quorum(self, matches: Matcher, times: int | None = 1) -> Fault:
        """The request is applied and answered 202, as when fewer copies than the write
        quorum stored it (the in-memory CouchDB has one copy: it never does so by itself)."""
        return self.inject(Fault(matches, status=202, times=times))

    def delay(self, matches: Matcher, seconds: float, times: int | None = 1) -> Fault:
        """The request is applied at once, its answer comes ``seconds`` later."""
        return self.inject(Fault(matches, delay=seconds, times=times))

    async def handle(self, request: Request) -> Response:
        if self._record:
            self.requests.append(request)
        await asyncio.sleep(0)  # a request is never answered in the caller's own step, as over a network
        fault = next((f for f in self.faults if not f.spent and f.matches(request)), None)
        if fault is not None:
            fault.hits += 1
        call = self._answer(request, fault)
        if request.timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, request.timeout)
        except TimeoutError:
            raise Timeout(request.method, request.path, reason="no response in time") from None

    async def _answer(self, request: Request, fault: Fault | None) -> Response:
        if fault is None:
            return await self.server.handle(request)
        if fault.before is not None:
            await fault.before(request)
        response = await self.server.handle(request) if fault.applied else None
        if fault.after is not None:
            await fault.after(request)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.error is not None:
            raise fault.error(request.method, request.path, reason="injected fault")
        if response is None:
            canned = fault.body if fault.body is not None else {"error": "unavailable", "reason": "injected fault"}
            return answer(fault.status or 503, canned)
        return replace(response, status=fault.status or response.status)
