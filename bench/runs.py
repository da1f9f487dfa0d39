"""One run of ``python -m bench``: setup, preheat, each workload × concurrency direct then
through the sidecar, and the cache's staleness and full-cache measurements."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import aiohttp
import orjson

from .couch import Couch, cpu_seconds, log
from .measure import JSON_HEADERS, drive, percentile, session_for
from .sidecar import Sidecar
from .workloads import Targets

PREHEAT_CONCURRENCY = 10
C1_CAP = 500  # requests at concurrency 1: latency-bound, so fewer keep the run short


async def staleness(targets: Targets, auth: dict[str, str], samples: int) -> dict[str, Any]:
    """The cache's staleness bound, measured: a note is read through the sidecar (cached),
    deleted straight in CouchDB (a write the sidecar did not make), and the sidecar polled
    until it answers 404; the time from CouchDB's answer to the first 404."""
    delays = []
    async with session_for(2) as side, session_for(2, auth) as direct:
        for _ in range(samples):
            async with side.post(
                f"{targets.sidecar_url}/v1/note", headers=JSON_HEADERS, data=orjson.dumps({"title": "stale?"})
            ) as resp:
                docid, etag = orjson.loads(await resp.read())["id"], resp.headers["ETag"]
            for _ in range(2):  # cached (and read once more from memory)
                async with side.get(f"{targets.sidecar_url}/v1/note/{docid}") as resp:
                    await resp.read()
            async with direct.delete(f"{targets.db_url}/{docid}", params={"rev": etag.strip('"')}) as resp:
                await resp.read()
                done = time.perf_counter()
            while True:
                async with side.get(f"{targets.sidecar_url}/v1/note/{docid}") as resp:
                    await resp.read()
                    if resp.status == 404:
                        delays.append(time.perf_counter() - done)
                        break
    delays.sort()
    return {
        "samples": samples,
        "p50_ms": round(1000 * percentile(delays, 0.5), 2),
        "max_ms": round(1000 * delays[-1], 2),
    }


async def fill_cache(targets: Targets, sidecar: Sidecar, megabytes: float) -> dict[str, Any]:
    """RSS with the read cache full: notes of 10,000 characters created in bulk (bulk
    writes only evict), then each read once (cached), ``megabytes`` worth and 10% more per
    worker (connections spread over the workers, each caching what it reads)."""
    body = "y" * 10000
    count = int(megabytes * 1.1 * len(sidecar.pids()) * 1024 * 1024 / len(body)) + 1
    ids: list[str] = []
    async with session_for(50) as side:
        for start in range(0, count, 50):  # 50 × 10 kB: under the 1 MiB body limit
            items = [{"op": "create", "body": {"title": "fill", "body": body}}] * min(50, count - start)
            async with side.post(
                f"{targets.sidecar_url}/v1/note/_bulk", headers=JSON_HEADERS, data=orjson.dumps({"items": items})
            ) as resp:
                answer = orjson.loads(await resp.read())
                if resp.status != 200:
                    raise RuntimeError(f"bulk create: {resp.status} {answer}")
                ids += [result["id"] for result in answer["results"] if result["status"] == 201]

        async def read(session: aiohttp.ClientSession, i: int, w: int) -> int:
            async with session.get(f"{targets.sidecar_url}/v1/note/{ids[i % len(ids)]}") as resp:
                await resp.read()
                return resp.status

        outcome = await drive(side, read, len(ids), 50)
        async with side.get(f"{sidecar.url}/_metrics") as resp:
            metrics = await resp.text()
    per_worker: dict[str, list[float]] = {"bytes": [], "entries": []}  # one value per worker's series
    for line in metrics.splitlines():
        if line.startswith(("data_service_cache_bytes{", "data_service_cache_entries{")):
            per_worker[line.split("{")[0].removeprefix("data_service_cache_")].append(float(line.split()[-1]))
    gauges = {"entries": sum(per_worker["entries"]), "bytes": max(per_worker["bytes"], default=0.0)}
    right_after = sidecar.memory()
    await asyncio.sleep(20)  # at rest: the sidecar returns freed heap pages every 15 s
    return {
        "documents": len(ids),
        "read_errors": outcome.errors,
        **gauges,
        "right_after": right_after,
        **sidecar.memory(),
    }


def requests_at(concurrency: int, requests: int) -> int:
    """Concurrency 1 is latency-bound: cap it so the run stays short."""
    return min(requests, C1_CAP) if concurrency == 1 else requests


async def run_workloads(args: argparse.Namespace, couch: Couch, database: str, sidecar: Sidecar) -> list[dict]:
    targets = Targets(couch, database, sidecar.url)
    auth = {"Authorization": couch.authorization}
    results = []
    preheat_c = min(PREHEAT_CONCURRENCY, max(args.concurrency))
    async with session_for(4) as setup, session_for(4, auth) as direct:
        await targets.prepare_get(setup, direct)
    if "update" in args.workloads:
        async with session_for(4, auth) as direct, session_for(4) as side:
            await targets.prepare_update(direct, side, max(args.concurrency))
    if args.preheat:
        # Once, before any measurement: CouchDB's JIT (pouchdb-server is node) and the sidecar
        # warm up on every code path, so the first measurement (always a direct one) is not
        # penalised for going first.
        log(f"  preheat: {args.preheat} requests per workload and target at c={preheat_c} (not measured)")
        for workload in args.workloads:
            for target in ("direct", "sidecar"):
                async with session_for(preheat_c, auth if target == "direct" else None) as session:
                    await drive(
                        session, getattr(targets, f"{workload.replace('-', '_')}_{target}"), args.preheat, preheat_c
                    )
    for workload in args.workloads:
        for concurrency in args.concurrency:
            n = requests_at(concurrency, args.requests)
            row: dict[str, Any] = {
                "workload": workload,
                "concurrency": concurrency,
                "requests": n,
                "warmup": args.warmup,
            }
            for target in ("direct", "sidecar"):
                call = getattr(targets, f"{workload.replace('-', '_')}_{target}")
                async with session_for(concurrency, auth if target == "direct" else None) as session:
                    await drive(session, call, args.warmup, concurrency)
                    async with session_for(1, auth) as direct:
                        await targets.settle(direct)
                    cpu = (cpu_seconds(os.getpid()), sidecar.cpu_seconds(), cpu_seconds(couch.pid))
                    outcome = await drive(session, call, n, concurrency)
                    cpu_after = (cpu_seconds(os.getpid()), sidecar.cpu_seconds(), cpu_seconds(couch.pid))
                summary = outcome.summary()
                # CPU milliseconds per request of each process (couchdb only when this run started it)
                summary["cpu_ms_per_request"] = {
                    name: (None if before is None or after is None else round(1000 * (after - before) / n, 3))
                    for name, before, after in zip(("client", "sidecar", "couchdb"), cpu, cpu_after, strict=True)
                }
                row[target] = summary
                log(
                    f"  {workload:<6} c={concurrency:<3} {target:<7} n={n}: {summary['rps']:8.1f} req/s  "
                    f"p50 {summary['p50_ms']:7.2f} ms  p99 {summary['p99_ms']:7.2f} ms"
                    + (f"  ERRORS {summary['errors']} {summary['statuses']}" if summary["errors"] else "")
                )
            row["ratio"] = {
                "rps": round(row["sidecar"]["rps"] / row["direct"]["rps"], 3),
                "p50": round(row["sidecar"]["p50_ms"] / row["direct"]["p50_ms"], 3),
            }
            row["sidecar_memory"] = sidecar.memory()
            results.append(row)
    return results


async def cache_measurements(args: argparse.Namespace, couch: Couch, database: str, sidecar: Sidecar) -> dict:
    targets = Targets(couch, database, sidecar.url)
    out: dict[str, Any] = {}
    if args.staleness:
        log(f"  staleness: {args.staleness} writes straight to CouchDB, each polled until the sidecar sees it")
        out["staleness"] = await staleness(targets, {"Authorization": couch.authorization}, args.staleness)
        log(f"  staleness: {out['staleness']}")
    if args.fill_cache:
        log(f"  fill: the {args.fill_cache:g} MB cache filled with notes of 10,000 characters")
        out["cache_full"] = await fill_cache(targets, sidecar, args.fill_cache)
        log(f"  fill: {out['cache_full']}")
    return out
