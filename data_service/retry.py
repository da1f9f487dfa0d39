"""Bounded retries with capped exponential backoff and full jitter (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable


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
