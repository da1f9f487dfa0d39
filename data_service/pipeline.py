"""Working through pages of documents as a pipeline: the next page is read while the
current ones are worked on, and a few pages are worked on at once (their writes in
flight together). Used by the whole-database jobs (``maintenance``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def read_ahead(pages: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """``pages``, each next one already being read while the caller works on the last."""
    upcoming = asyncio.ensure_future(anext(pages, None))
    try:
        while (page := await upcoming) is not None:
            upcoming = asyncio.ensure_future(anext(pages, None))
            yield page
    finally:
        upcoming.cancel()
        await asyncio.wait([upcoming])  # the generator must be idle before it can be closed
        await pages.aclose()


async def pipelined(pages: AsyncGenerator[T, None], work: Callable[[T], Awaitable[None]], depth: int) -> None:
    """``work`` on every page, up to ``depth`` pages at once, the next page read while
    they run. The first failure cancels the pages still running and is raised as it is."""
    running: set[asyncio.Future[None]] = set()

    async def settle(until: int) -> None:
        nonlocal running
        while len(running) > until:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()

    async with contextlib.aclosing(read_ahead(pages)) as ahead:  # closed at once on a failure too
        try:
            async for page in ahead:
                await settle(depth - 1)
                running.add(asyncio.ensure_future(work(page)))
            await settle(0)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
