"""Load generation and its figures: workers driving a request function, latencies and
statuses, percentiles; the event loop a run uses; the machine it ran on."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .couch import Couch

Call = Callable[[aiohttp.ClientSession, int, int], Awaitable[int]]  # (session, i, worker) -> status
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class Outcome:
    requests: int
    elapsed: float
    latencies: list[float]  # seconds, successful and failed alike
    statuses: collections.Counter = field(default_factory=collections.Counter)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not (isinstance(status, int) and 200 <= status < 300))

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))},
            "elapsed_s": round(self.elapsed, 4),
            "rps": round(self.requests / self.elapsed, 1),
            "mean_ms": round(1000 * sum(ordered) / len(ordered), 3),
            "p50_ms": round(1000 * percentile(ordered, 0.50), 3),
            "p90_ms": round(1000 * percentile(ordered, 0.90), 3),
            "p99_ms": round(1000 * percentile(ordered, 0.99), 3),
            "max_ms": round(1000 * ordered[-1], 3),
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n*q), at least 1
    return ordered[int(rank) - 1]


async def drive(session: aiohttp.ClientSession, call: Call, requests: int, concurrency: int) -> Outcome:
    """``concurrency`` workers take request numbers from one shared counter."""
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    counter = 0

    async def worker(w: int) -> None:
        nonlocal counter
        while counter < requests:
            i = counter
            counter += 1
            started = time.perf_counter()
            try:
                status = await call(session, i, w)
            except Exception as exc:  # no answer (or an unreadable one): an error, named by its type
                status = type(exc).__name__
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return Outcome(requests, time.perf_counter() - started, latencies, statuses)


def session_for(concurrency: int, headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60, force_close=False)
    return aiohttp.ClientSession(connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=60))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def run(coroutine: Awaitable[Any]) -> Any:
    """Run on uvloop when installed (like the sidecar): less client CPU on a small box.
    SIGTERM cancels the run (KeyboardInterrupt), so the caller's cleanup still happens."""

    async def guarded() -> Any:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coroutine
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, interrupt)

    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(guarded())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def machine_info(couch: Couch) -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    status, root = couch.request("GET", "/")
    root = root or {}
    kind = "couchdb" if "couchdb" in root else "pouchdb-server" if "express-pouchdb" in root else "unknown"

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "loadavg_at_start": loadavg(),
        "cpu_model": model,
        "mem_total_mib": mem_kib // 1024 if mem_kib else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "server": {"kind": kind, "version": root.get("version"), "status": status},
        "packages": {name: version(name) for name in ("data-service", "tornado", "aiohttp", "uvloop", "orjson")},
        "sidecar_loop": "uvloop" if version("uvloop") else "asyncio",
        "client_loop": "uvloop" if version("uvloop") else "asyncio",
    }


def loadavg() -> list[float] | None:
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def machine_line(machine: dict) -> str:
    server = machine["server"]
    return (
        f"{machine['nproc']} CPU ({machine['cpu_model']}), {machine['mem_total_mib']} MiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}, "
        f"{server['kind']} {server['version']}, sidecar data-service "
        f"{machine['packages']['data-service']} on tornado {machine['packages']['tornado']} + "
        f"{machine['sidecar_loop']}"
    )
