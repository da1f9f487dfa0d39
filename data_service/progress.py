"""Progress of a long job, with its rate and the time left:
``label: done/total documents (x%), N docs/s, about M s left``.

On a terminal the line is rewritten in place (at most every ``TTY_EVERY`` seconds);
otherwise (a log, a pipe) a line is written every ``every`` seconds and at the end. The
rate is the job's average since it started; the time left is what remains at that rate.
The last line says how long the job took: ``..., N docs/s, T.t s``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

TTY_EVERY = 0.25  # seconds between rewrites on a terminal


def duration(seconds: float) -> str:
    """``42 s``, ``17 min``, ``2 h 5 min``: as exact as a person wants a time left."""
    seconds = max(0, round(seconds))
    if seconds < 100:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 100:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


class Progress:
    """``advance`` as documents are done, ``finish`` at the end (its line says the
    average rate and how long the job took)."""

    def __init__(
        self,
        label: str,
        total: int,
        out: TextIO = sys.stderr,
        every: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.out, self.clock = label, max(total, 0), out, clock
        self.done = 0
        self.started = clock()
        self._tty = out.isatty()
        self._every = TTY_EVERY if self._tty else every
        self._last = self.started
        self._width = 0  # of the line last written in place

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def rate(self) -> float | None:
        """Documents per second since the start; None before any time has passed."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else None

    def line(self, finished: bool = False) -> str:
        text = f"{self.label}: {self.done}/{self.total} documents"
        if self.total:
            text += f" ({100 * self.done // self.total}%)"
        rate = self.rate
        if rate is None or not self.done:
            return text + (f", {self.elapsed:.1f} s" if finished else "")
        text += f", {rate:.0f} docs/s"
        if finished:
            return text + f", {self.elapsed:.1f} s"
        if self.done < self.total:
            text += f", about {duration((self.total - self.done) / rate)} left"
        return text

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self._last >= self._every:
            self._last = now
            self._show(self.line())

    def finish(self) -> None:
        self._show(self.line(finished=True), end="\n")

    def _show(self, text: str, end: str | None = None) -> None:
        if self._tty:  # in place: back to the line's start, blank out what is left of a longer one
            padded = text.ljust(self._width)
            self._width = 0 if end == "\n" else len(text)
            self.out.write(f"\r{padded}{end or ''}")
        else:
            self.out.write(f"{text}\n")
        self.out.flush()
