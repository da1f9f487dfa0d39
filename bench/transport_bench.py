#!/usr/bin/env python3
"""Micro-benchmark of the CouchDB transports alone: CPU per request of this process.

For each workload, concurrency and transport (``data_service.couchdb.TRANSPORTS``),
the same requests go straight through the transport (no client, no retries, no
hooks) to CouchDB, and the run reports requests/s and this process's CPU time per
request (user + system, ``time.process_time``), which is what a transport costs the
sidecar. Workloads:

  get       GET one small document (~150 bytes)
  put       PUT a new small document (201)
  all_docs  GET _all_docs?include_docs=true&limit=50 (a chunked answer of 50 rows)

CouchDB is ``--couchdb-url`` (admin credentials in the URL), else ``$COUCHDB_URL``,
else a private in-memory pouchdb-server started for the run (scripts/devcouch.py).
The database ``transport_bench_<random>`` is created and deleted at the end, also on
failure or Ctrl-C. Runs on uvloop (as ``serve`` does) unless ``--loop=asyncio``.

Measures only; asserts nothing about speed. Figures from a machine shared with other
work are noise. Exit status: 0; 1 when a measurement had a failed request (not 2xx,
or no answer); 2 when setting up failed; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import devcouch  # noqa: E402

from data_service.couchdb import TRANSPORTS, AsyncTransport, Limits, Request  # noqa: E402
from data_service.couchdb.client import split_credentials  # noqa: E402

WORKLOADS = ("get", "put", "all_docs")
SMALL = {"type": "note_v1.0", "title": "a small note", "body": "x" * 80, "meta": {"v": 1}}
ROWS = 50


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Measured:
    workload: str
    concurrency: int
    transport: str
    requests: int
    seconds: float
    cpu_seconds: float
    failed: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.requests


class Workloads:
    """The requests of each workload against one database."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._next = 0

    def request(self, workload: str) -> Request:
        if workload == "get":
            return Request("GET", f"/{self.database}/small")
        if workload == "put":
            self._next += 1
            return Request("PUT", f"/{self.database}/p{self._next:08}-{uuid.uuid4().hex[:8]}", body=orjson.dumps(SMALL))
        params = (("include_docs", "true"), ("limit", str(ROWS)), ("startkey", '"r"'))
        return Request("GET", f"/{self.database}/_all_docs", params)

    async def setup(self, transport: AsyncTransport) -> None:
        for request in (
            Request("PUT", f"/{self.database}"),
            Request("PUT", f"/{self.database}/small", body=orjson.dumps(SMALL)),
            Request(
                "POST",
                f"/{self.database}/_bulk_docs",
                body=orjson.dumps({"docs": [{"_id": f"r{i:03}", **SMALL} for i in range(ROWS)]}),
            ),
        ):
            response = await transport.handle(request)
            if response.status >= 300:
                raise RuntimeError(f"setup: {request.method} {request.path} answered {response.status}")

    async def teardown(self, transport: AsyncTransport) -> None:
        await transport.handle(Request("DELETE", f"/{self.database}"))


async def drive(transport: AsyncTransport, make: Callable[[], Request], requests: int, concurrency: int) -> int:
    """Send ``requests`` requests, ``concurrency`` at a time; returns how many failed."""
    remaining = requests
    failed = 0

    async def worker() -> None:
        nonlocal remaining, failed
        while remaining > 0:
            remaining -= 1
            try:
                response = await transport.handle(make())
                failed += response.status >= 300
            except ConnectionError:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


async def measure(
    kind: str, base: str, auth, workloads: Workloads, workload: str, concurrency: int, args: argparse.Namespace
) -> Measured:
    transport = TRANSPORTS[kind](base, auth=auth, limits=Limits(max_connections=max(concurrency, 1)))
    try:
        make = functools.partial(workloads.request, workload)
        await drive(transport, make, args.warmup, concurrency)
        started, cpu = time.perf_counter(), time.process_time()
        failed = await drive(transport, make, args.requests, concurrency)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await transport.aclose()
    return Measured(workload, concurrency, kind, args.requests, seconds, cpu_seconds, failed)


async def run_all(url: str, args: argparse.Namespace) -> list[Measured]:
    base, auth = split_credentials(url)
    workloads = Workloads(f"transport_bench_{uuid.uuid4().hex[:10]}")
    admin = TRANSPORTS["aiohttp"](base, auth=auth)
    results: list[Measured] = []
    try:
        await workloads.setup(admin)
        plan = [(w, c, k) for w in args.workloads for c in args.concurrency for k in args.transports]
        started = time.monotonic()
        for done, (workload, concurrency, kind) in enumerate(plan, 1):
            result = await measure(kind, base, auth, workloads, workload, concurrency, args)
            results.append(result)
            elapsed = time.monotonic() - started
            left = elapsed / done * (len(plan) - done)
            log(
                f"[{done}/{len(plan)}] {workload} c={concurrency} {kind}: {result.per_second:,.0f} req/s, "
                f"{result.cpu_ms:.3f} ms CPU/request, {result.failed} failed; "
                f"{done / elapsed:.2f} measurements/s, about {left:.0f} s left"
            )
    finally:
        with contextlib.suppress(Exception):
            await workloads.teardown(admin)
        await admin.aclose()
    return results


def markdown(results: list[Measured], server: str, loop: str) -> str:
    lines = [
        f"Transports against {server}, client loop {loop}; CPU is this process's (user + system) per request.",
        "",
        "| workload | concurrency | transport | req/s | CPU ms/request | failed |",
        "|---|--:|---|--:|--:|--:|",
    ]
    for r in results:
        lines.append(
            f"| {r.workload} | {r.concurrency} | {r.transport} | {r.per_second:,.0f} | {r.cpu_ms:.3f} | {r.failed} |"
        )
    return "\n".join(lines)


def listed(choices: tuple[str, ...] | list[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names or any(name not in choices for name in names):
            raise argparse.ArgumentTypeError(f"comma-separated, from {', '.join(choices)}")
        return names

    return parse


def counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated positive integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated positive integers")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--couchdb-url", help="CouchDB with admin credentials (default: $COUCHDB_URL, else private)")
    parser.add_argument(
        "--transports", type=listed(list(TRANSPORTS)), default=list(TRANSPORTS), help="default: all, e.g. httptools"
    )
    parser.add_argument(
        "--workloads", type=listed(WORKLOADS), default=list(WORKLOADS), help="default: get,put,all_docs"
    )
    parser.add_argument("--concurrency", type=counts, default=[1, 50], help="comma-separated (default: 1,50)")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per line (default: 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests before each (default: 200)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="client event loop")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0:
        parser.error("--requests must be at least 1, --warmup 0 or more")
    return args


def run(coroutine: Awaitable, loop: str):
    if loop == "uvloop":
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.couchdb_url or os.environ.get("COUCHDB_URL")
        server = "CouchDB at " + split_credentials(url)[0] if url else "a private in-memory pouchdb-server"
        if not url:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="transport-bench-")))
            url = devcouch.start(directory, memory=True).admin_url
            stack.callback(devcouch.stop, directory)
        try:
            results = run(run_all(url, args), args.loop)
        except KeyboardInterrupt:
            log("transport_bench: interrupted")
            return 130
        except (RuntimeError, ConnectionError) as exc:
            log(f"transport_bench: setting up failed: {exc}")
            return 2
    print(markdown(results, server, args.loop))
    failed = [r for r in results if r.failed]
    for r in failed:
        log(f"transport_bench: {r.workload} c={r.concurrency} {r.transport}: {r.failed}/{r.requests} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
