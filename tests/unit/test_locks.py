"""One writer per document across a sidecar's worker processes (``store/locks.py``):
two processes never hold one document at once, and a killed holder releases it."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import signal
import time
from pathlib import Path

from data_service.store.locks import DocLocks

FORK = multiprocessing.get_context("fork")


def _hold_many(path: str, log: str, rounds: int) -> None:
    async def main() -> None:
        locks = DocLocks(path)
        for _ in range(rounds):
            async with locks.held(["doc-1"]):
                started = time.monotonic()
                await asyncio.sleep(0.002)
                with open(log, "a") as out:
                    out.write(f"{os.getpid()} {started} {time.monotonic()}\n")

    asyncio.run(main())


def test_two_processes_never_hold_one_document_at_once(tmp_path):
    path, log = str(tmp_path / "documents.lock"), str(tmp_path / "log")
    workers = [FORK.Process(target=_hold_many, args=(path, log, 40)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    lines = Path(log).read_text().splitlines()
    spans = sorted(tuple(map(float, line.split()[1:])) for line in lines)
    assert len(spans) == 80 and len({line.split()[0] for line in lines}) == 2
    overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
    assert overlaps == []


def _hold_forever(path: str, ready) -> None:
    async def main() -> None:
        async with DocLocks(path).held(["doc-1", "doc-2"]):
            ready.set()
            await asyncio.sleep(3600)

    asyncio.run(main())


async def test_a_killed_holder_releases_its_documents(tmp_path):
    path = str(tmp_path / "documents.lock")
    ready = FORK.Event()
    holder = FORK.Process(target=_hold_forever, args=(path, ready))
    holder.start()
    assert await asyncio.to_thread(ready.wait, 10)
    locks = DocLocks(path)
    waiting = asyncio.ensure_future(_take(locks))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # held by the other process
    os.kill(holder.pid, signal.SIGKILL)
    await asyncio.wait_for(waiting, 5)  # the kernel released its record locks
    holder.join(5)


async def _take(locks: DocLocks) -> None:
    async with locks.held(["doc-2"]):
        pass


async def test_one_process_serializes_its_own_tasks_and_distinct_documents_run_together():
    locks, order = DocLocks(), []

    async def write(docid: str, tag: str) -> None:
        async with locks.held([docid]):
            order.append(f"{tag}+")
            await asyncio.sleep(0.01)
            order.append(f"{tag}-")

    await asyncio.gather(write("a", "1"), write("a", "2"), write("b", "3"))
    assert order.index("1-") < order.index("2+")  # one document: one at a time
    assert order.index("3+") < order.index("1-")  # another document: not held up
