"""One run: the bed set up, the slots' first documents created, the clients and the fault
schedule for ``seconds``, every fault undone, the final sweep and state, the checks. The
history (``history.jsonl``) and both sidecars' logs stay in the run's directory."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from support import CouchScript

from .check import Result, check
from .cluster import Bed
from .record import save
from .schedule import SCHEDULES, play
from .workload import Client, Slot, World

DOCUMENTS = 20


@dataclass
class Outcome:
    result: Result
    notes: dict
    workdir: Path


async def run_once(
    schedule: str,
    seconds: float,
    script: CouchScript,
    workdir: Path,
    *,
    seed: int = 1,
    clients: int = 8,
    documents: int = DOCUMENTS,
    rate: float = 100.0,
    keep_database: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    workdir.mkdir(parents=True, exist_ok=True)
    database = f"history_{uuid.uuid4().hex[:10]}"
    notes: dict = {"schedule": schedule, "seconds": seconds, "seed": seed, "database": database, "faults": []}
    notes |= {"clients": clients, "documents": documents, "rate": rate, "workdir": str(workdir)}
    bed = Bed(script, workdir, database, seed)
    world = World(rate, random.Random(seed))
    world.slots = [Slot(f"s{i:02}") for i in range(documents)]
    team = [
        Client(f"c{i}", bed.sidecars[i % 2].name, bed.sidecars[i % 2].base, world, seed * 1000 + i)
        for i in range(clients)
    ]
    try:
        await bed.setup()
        world.started = time.monotonic()  # the clock of every op and fault: 0 = the first create
        for slot in world.slots:  # every slot's first document, through A
            await team[0].create(slot)
        begin = world.now()
        watch = asyncio.create_task(_report_progress(world, begin, seconds, progress))
        clients_ran = asyncio.gather(*(client.run() for client in team))
        # the clients run for ``seconds``, and on until every step of the schedule has been
        # played (node restarts take longer on a busy machine)
        await asyncio.gather(
            asyncio.sleep(seconds),
            play(SCHEDULES[schedule], bed, begin, seconds, world.now, notes["faults"]),
        )
        world.stopped = True
        await clients_ran
        notes["seconds_run"] = world.now() - begin
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await bed.restore()
        notes["strays"] = {s.name: [f"{t:.1f}: {raw[:300]!r}" for t, raw in s.proxy.strays] for s in bed.sidecars}
        ids = {op.doc for op in world.ops if op.doc}
        final = await bed.final_state(ids, notes)
    finally:
        for client in team:
            await client.aclose()
        await bed.teardown(keep_database)
    save(workdir / "history.jsonl", world.ops, final, notes)
    return Outcome(check(world.ops, final), notes, workdir)


async def _report_progress(world: World, begin: float, seconds: float, progress: Callable[[str], None] | None) -> None:
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    while True:
        await asyncio.sleep(10)
        done = world.now() - begin
        count = sum(op.invoked >= begin for op in world.ops)
        left = f"{seconds - done:.0f} s left" if done < seconds else "until the fault schedule is done"
        say(f"  {done:4.0f}/{seconds:.0f} s: {count} operations ({count / done:.0f}/s), {left}")
