"""``pipeline.pipelined``: pages worked on a few at once while the next is read; a failure
comes out as it was raised, the pages still running are cancelled and the source closed."""

from __future__ import annotations

import asyncio

import pytest

from data_service.pipeline import pipelined


class Source:
    def __init__(self, count: int) -> None:
        self.count, self.read, self.closed = count, 0, False

    async def pages(self):
        try:
            for n in range(self.count):
                await asyncio.sleep(0)
                self.read += 1
                yield n
        finally:
            self.closed = True


async def test_every_page_is_worked_on_at_most_depth_at_once():
    source, running, most, done = Source(10), 0, 0, []

    async def work(page: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(page)

    await pipelined(source.pages(), work, depth=3)
    assert sorted(done) == list(range(10)) and most == 3 and source.closed


async def test_a_failure_is_raised_as_it_is_the_others_cancelled_and_the_source_closed():
    source, cancelled = Source(100), []

    async def work(page: int) -> None:
        if page == 2:
            raise ValueError("page 2")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(page)
            raise

    with pytest.raises(ValueError, match="page 2"):
        await asyncio.wait_for(pipelined(source.pages(), work, depth=3), timeout=5)
    assert sorted(cancelled) == [0, 1] and source.closed and source.read <= 5  # not read to the end
