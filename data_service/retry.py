"""Bounded retries with capped exponential backoff and full jitter: the one retry loop."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; before retry *n* (0-based) sleep
    ``uniform(0, min(cap, base * 2**n))`` seconds ("full jitter")."""

    attempts: int = 3
    base: float = 0.05
    cap: float = 1.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def ceiling(self, retry: int) -> float:
        return min(self.cap, self.base * (2**retry))

    def delay(self, retry: int) -> float:
        return self.random() * self.ceiling(retry)


async def attempts(policy: RetryPolicy, sleep: Callable[[float], Awaitable[Any]]) -> AsyncIterator[int]:
    """``policy.attempts`` attempt numbers, sleeping the policy's backoff before each but
    the first (``sleep`` is injected: tests pass one that records instead of waiting)::

        async for _ in attempts(policy, sleep):
            try:
                return await write()
            except Conflict:
                continue
        raise Exhausted()
    """
    for attempt in range(policy.attempts):
        if attempt:
            await sleep(policy.delay(attempt - 1))
        yield attempt
