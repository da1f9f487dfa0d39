"""Fault schedules: what happens to the cluster, the sidecars and the proxies while the
clients run, at fractions of the run's length. ``nofaults`` is empty; ``faults`` kills a
node and restarts it, makes the proxies drop and delay CouchDB answers, SIGKILLs a worker of
each sidecar, takes two nodes down and brings them back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .cluster import Bed

Action = Callable[[Bed], Awaitable[str]]


@dataclass(frozen=True)
class Step:
    """``action`` at ``at`` (a fraction of the run), and no sooner than ``gap`` (a fraction
    too) after the step before it finished: node restarts take seconds on a busy machine,
    and a fault window must stay open a while whenever it opened."""

    at: float
    action: Action
    gap: float = 0.0


async def kill_node_3(bed: Bed) -> str:
    await bed.kill_node(3)
    return "node 3 SIGKILLed"


async def start_node_3(bed: Bed) -> str:
    await bed.start_nodes(3)
    return "node 3 started again (back in the cluster)"


async def stop_nodes_2_and_3(bed: Bed) -> str:
    await bed.stop_nodes(2, 3)
    return "nodes 2 and 3 stopped (two nodes down: A writes below quorum, B has no node)"


async def start_nodes_2_and_3(bed: Bed) -> str:
    await bed.start_nodes(2, 3)
    return "nodes 2 and 3 started again"


def kill_worker(name: str) -> Action:
    async def kill(bed: Bed) -> str:
        [sidecar] = [s for s in bed.sidecars if s.name == name]
        return f"sidecar {name}: worker pid {sidecar.kill_worker()} SIGKILLed"

    return kill


def flaky_links(drop: float, delay: float) -> Action:
    """Both proxies: answers to document writes dropped (the request reaches CouchDB) with
    probability ``drop``; a quarter of all answers delayed ``delay`` s; reads' answers
    dropped with half the probability."""

    async def flaky(bed: Bed) -> str:
        documents = rf"^/{bed.database}/[0-9a-f]"
        for sidecar in bed.sidecars:
            for method in ("PUT", "DELETE"):
                sidecar.proxy.rule("drop", method, documents, probability=drop)
            sidecar.proxy.rule("drop", "GET", documents, probability=drop / 2)
            sidecar.proxy.rule("delay", None, f"^/{bed.database}/", probability=0.25, seconds=delay)
        return f"proxies: drop {drop:.0%} of document write answers, {drop / 2:.1%} of reads; delay 25% by {delay} s"

    return flaky


async def calm_links(bed: Bed) -> str:
    """Every proxy rule removed; says how often each applied."""
    counts = []
    for sidecar in bed.sidecars:
        applied: dict[str, int] = {}
        for rule in sidecar.proxy.rules:
            applied[rule.action] = applied.get(rule.action, 0) + rule.applied
        sidecar.proxy.clear()
        counts.append(f"{sidecar.name}: " + ", ".join(f"{n} {PAST[action]}" for action, n in sorted(applied.items())))
    return f"proxies calm again ({'; '.join(counts)} answers)"


PAST = {"drop": "dropped", "delay": "delayed"}

SCHEDULES: dict[str, list[Step]] = {
    "nofaults": [],
    "faults": [
        Step(0.05, kill_node_3),
        Step(0.12, start_node_3, gap=0.05),
        Step(0.25, flaky_links(drop=0.05, delay=0.2)),
        Step(0.38, calm_links, gap=0.12),
        Step(0.42, kill_worker("A")),
        Step(0.45, stop_nodes_2_and_3),
        Step(0.58, start_nodes_2_and_3, gap=0.08),
        Step(0.76, kill_worker("B")),
        Step(0.78, flaky_links(drop=0.05, delay=0.2)),
        Step(0.92, calm_links, gap=0.1),
    ],
}


async def play(steps: list[Step], bed: Bed, begin: float, seconds: float, now: Callable[[], float], log: list[str]):
    """Each step at its time after ``begin`` (on the clock ``now``, the ops' clock); ``log``
    gets one line each."""
    done = begin
    for step in steps:
        wait = max(begin + step.at * seconds, done + step.gap * seconds) - now()
        if wait > 0:
            await asyncio.sleep(wait)
        started = now()
        what = await step.action(bed)
        done = now()
        log.append(f"{started:5.1f} s {what}")
