"""bcrypt off the event loop, with backpressure: a bounded queue and a bounded wait.

bcrypt is slow on purpose (cost 12: a quarter of a second per hash on one core), so a
burst of ``/verify`` calls must not queue without end behind two threads: creates and
other verifies would wait for minutes. ``Hasher`` admits at most ``limit`` jobs (queued
or running) per process; one more is refused at once with 503 ``busy``. A job still
waiting for a thread after ``max_wait`` seconds is dropped unrun, also ``busy``. So no
caller waits longer than ``max_wait`` plus one hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import ServiceError
from ..problems import Code

T = TypeVar("T")
DEFAULT_LIMIT = 64
DEFAULT_MAX_WAIT = 5.0  # seconds a job may wait for a thread
THREADS = 2


class Busy(ServiceError, RuntimeError):
    """The hashing queue is full, or a job waited too long for a thread (503 busy)."""

    code = Code.BUSY

    @property
    def detail(self) -> str:
        return str(self)


class _Expired(Exception):
    pass


class Hasher:
    def __init__(
        self,
        executor: Executor | None = None,
        limit: int = DEFAULT_LIMIT,
        max_wait: float = DEFAULT_MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.executor = executor or ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="bcrypt")
        self.limit, self.max_wait, self.clock = limit, max_wait, clock
        self.pending = 0  # jobs admitted and not finished (queued or running)
        self.jobs = 0  # jobs run (what tests and metrics count)
        self.refused = 0  # jobs answered busy

    @contextlib.contextmanager
    def reserved(self) -> Iterator[None]:
        """A place in the queue held across other work (a verify's CouchDB read), so a
        burst is refused before it reads; ``run(..., reserved=True)`` inside uses it."""
        self._admit()
        try:
            yield
        finally:
            self.pending -= 1

    async def run(self, fn: Callable[..., T], *args: Any, reserved: bool = False) -> T:
        """``fn(*args)`` in a thread, or Busy."""
        if not reserved:
            self._admit()
        deadline = self.clock() + self.max_wait
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self._job, deadline, fn, args)
        except _Expired:
            self.refused += 1
            raise Busy(f"the bcrypt job waited {self.max_wait:g} s for a thread; retry later") from None
        finally:
            if not reserved:
                self.pending -= 1

    def _admit(self) -> None:
        if self.pending >= self.limit:
            self.refused += 1
            raise Busy(f"{self.pending} bcrypt jobs are queued (the limit is {self.limit}); retry later")
        self.pending += 1

    def _job(self, deadline: float, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """In the thread: a job whose caller would have waited too long is not run."""
        if self.clock() > deadline:
            raise _Expired
        self.jobs += 1
        return fn(*args)
