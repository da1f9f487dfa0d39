"""The requests in flight and the change streams open in this process: what the drain
(``server.drain``) waits for, ends and cuts off."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Iterator
from typing import TypeVar

from tornado.web import RequestHandler

from ..config import Config
from ..problems import Code
from .problem import Problem

T = TypeVar("T")
QUIET_CHECK = 0.1  # seconds between looks at the requests in flight during the drain delay


class Closing(Exception):
    """The drain has begun (``InFlight.unless_closing``): answer with what there is."""


class InFlight:
    """The requests being answered, and the shutdown's two steps (``server.drain``):
    ``draining`` from SIGTERM on (readiness fails; serving goes on through the drain
    delay), ``closing`` once the drain proper begins (connections end after their
    answer, long polls and event streams end)."""

    def __init__(self) -> None:
        self._handlers: weakref.WeakSet[RequestHandler] = weakref.WeakSet()  # a dropped handler leaves by itself
        self._streams: weakref.WeakSet[RequestHandler] = weakref.WeakSet()  # long polls, event streams
        self._tasks: weakref.WeakKeyDictionary[RequestHandler, asyncio.Task] = weakref.WeakKeyDictionary()
        self._idle = asyncio.Event()
        self._closing = asyncio.Event()
        self._last = time.monotonic()  # when a request last began or ended
        self.draining = False

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        self._closing.set()

    def add(self, handler: RequestHandler) -> None:
        self._handlers.add(handler)
        self._idle.clear()
        self._last = time.monotonic()

    def remove(self, handler: RequestHandler) -> None:
        self._handlers.discard(handler)
        self._last = time.monotonic()
        if not self._handlers:
            self._idle.set()

    def streaming(self, handler: RequestHandler) -> None:
        """``handler`` waits for changes: it does not keep the drain delay going."""
        self._streams.add(handler)

    def __len__(self) -> int:
        return len(self._handlers)

    def running(self, handler: RequestHandler) -> None:
        """``handler`` runs in the current task (from ``prepare`` on: Tornado runs each
        request's ``_execute`` in a task of its own)."""
        if (task := asyncio.current_task()) is not None:
            self._tasks[handler] = task

    def cut_off(self) -> None:
        """Cut off the requests still in flight (past the drain timeout): their connections
        close, and their tasks are cancelled, so their CouchDB requests end with them and
        shutting down need not wait for CouchDB."""
        for handler in list(self._handlers):
            if (close := getattr(handler.request.connection, "close", None)) is not None:
                close()  # the caller sees the connection end, no answer
            if (task := self._tasks.get(handler)) is not None:
                task.cancel()

    async def wait_idle(self, timeout: float) -> int:
        """Wait until no request is in flight, at most ``timeout`` seconds; how many are left."""
        if self._handlers:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                pass
        return len(self._handlers)

    async def wait_quiet(self, quiet: float, longest: float) -> None:
        """Return once no request but streams has been in flight for ``quiet`` seconds
        (0: never early), or after ``longest`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + longest
        while (left := deadline - loop.time()) > 0:
            calm = time.monotonic() - self._last
            if quiet > 0 and calm >= quiet and not set(self._handlers) - set(self._streams):
                return
            await asyncio.sleep(min(left, QUIET_CHECK))

    async def unless_closing(self, work: Awaitable[T]) -> T:
        """``work``'s result; Closing (``work`` cancelled) if the drain begins first."""
        task = asyncio.ensure_future(work)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((task, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise Closing


class Streams:
    """Change streams (long polls and event streams) open at once in this process; one
    past ``limit`` is refused with 503 busy. Each holds a CouchDB connection while it
    waits (of the long-poll pool, ``couchdb.Limits``), so the bound keeps them from
    queueing for one behind each other and the read cache's feed."""

    def __init__(self, limit: int = Config.max_streams) -> None:
        self.limit = limit
        self.open = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if self.open >= self.limit:
            raise Problem(
                Code.BUSY,
                f"{self.open} change streams are open, the most this sidecar serves at once (--max-streams); "
                "retry later, or read without feed=longpoll",
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1
