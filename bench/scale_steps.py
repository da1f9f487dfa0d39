"""The steps of the scale benchmark (``python -m bench.scale``): filling through the sidecar's
``_bulk`` and CouchDB's ``_bulk_docs``, the first query after a fill, and latencies at one
connection, sidecar and direct."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from data_service.progress import Progress

from .couch import Couch, log
from .measure import JSON_HEADERS, drive, session_for
from .sidecar import Sidecar

TYPE = "item"
OWNERS = 100  # distinct owners: an equality page has size / 100 documents to choose from
SCORES = 1_000_000  # scores spread over [0, SCORES): a between page is a tenth of them
PAGE = 50
DEEP = 20  # the page a walk of the listing reaches
SAMPLE = 5000  # ids kept (at random) for GET by id
NO_CACHE = {"Cache-Control": "no-cache"}  # every sidecar read goes to CouchDB, like a direct one


def body(i: int) -> dict:
    return {"owner": f"owner-{i % OWNERS}", "score": (i * 7919) % SCORES, "secret": f"s{i}", "body": "x" * 200}


@dataclass
class Target:
    """One database the run fills: through the sidecar (``sidecar`` set) or straight."""

    couch: Couch
    database: str
    sidecar: Sidecar | None = None
    filled: int = 0
    ids: list[str] = field(default_factory=list)  # a uniform sample of the stored ids
    template: dict[str, Any] = field(default_factory=dict)  # a stored document, for direct writes

    @property
    def db_url(self) -> str:
        return f"{self.couch.url}/{self.database}"

    def keep(self, ids: list[str]) -> None:
        """Reservoir sampling: every stored id equally likely to be in ``ids``."""
        for docid in ids:
            self.filled += 1
            if len(self.ids) < SAMPLE:
                self.ids.append(docid)
            elif (slot := random.randrange(self.filled)) < SAMPLE:
                self.ids[slot] = docid


async def fill(target: Target, size: int, bulk: int, concurrency: int) -> dict[str, Any]:
    """Fill ``target`` up to ``size`` documents, ``concurrency`` bulks of ``bulk`` at once."""
    start, count = target.filled, max(0, size - target.filled)
    requests = -(-count // bulk)
    side = "sidecar" if target.sidecar else "direct"
    progress = Progress(f"fill {side} to {size}", count)
    headers = None if target.sidecar else {"Authorization": target.couch.authorization}

    async def one(session: aiohttp.ClientSession, i: int, w: int) -> int:
        first = start + i * bulk
        numbers = range(first, min(first + bulk, start + count))
        status, ids = await (bulk_sidecar if target.sidecar else bulk_direct)(session, target, numbers)
        target.keep(ids)
        progress.advance(len(numbers))
        return status

    async with session_for(concurrency, headers) as session:
        outcome = await drive(session, one, requests, concurrency)
    progress.finish()
    return {
        "documents": count,
        "seconds": round(outcome.elapsed, 2),
        "docs_per_s": round(count / outcome.elapsed, 1),
        "errors": outcome.errors,
        "statuses": {str(k): v for k, v in outcome.statuses.items()},
    }


async def bulk_sidecar(session: aiohttp.ClientSession, target: Target, numbers: range) -> tuple[int, list[str]]:
    assert target.sidecar is not None
    items = [{"op": "create", "body": body(i)} for i in numbers]
    async with session.post(
        f"{target.sidecar.url}/v1/{TYPE}/_bulk", headers=JSON_HEADERS, data=orjson.dumps({"items": items})
    ) as resp:
        answer = await resp.read()
    if resp.status != 200:
        return resp.status, []
    results = orjson.loads(answer)["results"]
    ids = [r["id"] for r in results if r.get("status") == 201]
    return (200 if len(ids) == len(items) else 500), ids


async def bulk_direct(session: aiohttp.ClientSession, target: Target, numbers: range) -> tuple[int, list[str]]:
    """Documents as the sidecar stores them (its envelope copied), ids in increasing order
    like CouchDB's sequential ``_uuids``."""
    docs = [{**target.template, **body(i), "_id": f"d{i:015d}"} for i in numbers]
    async with session.post(
        f"{target.db_url}/_bulk_docs", headers=JSON_HEADERS, data=orjson.dumps({"docs": docs})
    ) as resp:
        answer = await resp.read()
    if resp.status not in (201, 202):
        return resp.status, []
    ids = [r["id"] for r in orjson.loads(answer) if r.get("ok")]
    return (201 if len(ids) == len(docs) else 500), ids


async def timed(session: aiohttp.ClientSession, url: str, **params: str) -> float:
    """Seconds one GET took (it must answer 200)."""
    started = time.perf_counter()
    async with session.get(url, params=params) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {url} answered {resp.status}")
    return time.perf_counter() - started


def view_url(target: Target, design: str) -> str:
    return f"{target.db_url}/_design/{design}/_view/index"


async def first_query(target: Target, designs: list[str]) -> dict[str, float]:
    """Right after a fill: one equality page (through the sidecar for a sidecar target), then
    the time until every index of ``designs`` is current too."""
    auth = {"Authorization": target.couch.authorization}
    if target.sidecar:
        async with session_for(1, NO_CACHE) as side:
            first = await timed(side, f"{target.sidecar.url}/v1/{TYPE}", owner="owner-1", limit=str(PAGE))
    else:
        async with session_for(1, auth) as direct:
            first = await timed(
                direct, view_url(target, f"ds_{TYPE}_v1-owner"), key='["owner-1"]', include_docs="true", limit=str(PAGE)
            )
    started = time.perf_counter()
    await settle(target, designs)
    return {"first_query_s": round(first, 3), "all_current_s": round(first + time.perf_counter() - started, 3)}


async def settle(target: Target, designs: list[str]) -> None:
    """Every index of ``designs`` brought up to date, one after the other."""
    async with session_for(1, {"Authorization": target.couch.authorization}) as direct:
        for design in designs:
            await timed(direct, view_url(target, design), limit="0")


class Reads:
    """The read workloads at one connection: sidecar and direct against the same database."""

    def __init__(self, target: Target) -> None:
        assert target.sidecar is not None
        self.target, self.base = target, target.sidecar.url
        self.cursor: str | None = None  # the listing's page DEEP through the sidecar
        self.deep_key: tuple[str, str] | None = None  # (key, id) before that page, for direct keyset paging

    async def prepare(self, side: aiohttp.ClientSession, direct: aiohttp.ClientSession) -> None:
        cursor = None
        for _ in range(DEEP - 1):
            params = {"limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
            async with side.get(f"{self.base}/v1/{TYPE}", params=params) as resp:
                cursor = orjson.loads(await resp.read())["next"]
        self.cursor = cursor
        params = {"limit": "1", "skip": str((DEEP - 1) * PAGE - 1)}
        async with direct.get(view_url(self.target, f"ds_{TYPE}_v1"), params=params) as resp:
            row = orjson.loads(await resp.read())["rows"][0]
        self.deep_key = (json.dumps(row["key"]), row["id"])

    def calls(self) -> dict[str, tuple[Any, Any]]:
        """Workload name → (sidecar call, direct call)."""
        t, base, ids = self.target, self.base, self.target.ids

        def get(url: str):
            async def call(session: aiohttp.ClientSession, i: int, w: int) -> int:
                async with session.get(url.format(i=i, id=ids[(i * 7) % len(ids)])) as resp:
                    await resp.read()
                    return resp.status

            return call

        def page(url: str, params):
            async def call(session: aiohttp.ClientSession, i: int, w: int) -> int:
                async with session.get(url, params=params(i)) as resp:
                    await resp.read()
                    return resp.status

            return call

        owner = f"ds_{TYPE}_v1-owner"
        score = f"ds_{TYPE}_v1-score"
        low = lambda i: (i % 9) * (SCORES // 10)  # noqa: E731
        docs = {"include_docs": "true", "limit": str(PAGE)}
        assert self.cursor is not None and self.deep_key is not None
        key, docid = self.deep_key
        return {
            "get": (get(f"{base}/v1/{TYPE}/{{id}}"), get(f"{t.db_url}/{{id}}")),
            "equality page": (
                page(f"{base}/v1/{TYPE}", lambda i: {"owner": f"owner-{i % OWNERS}", "limit": str(PAGE)}),
                page(view_url(t, owner), lambda i: {"key": f'["owner-{i % OWNERS}"]', **docs}),
            ),
            "between page": (
                page(
                    f"{base}/v1/{TYPE}",
                    lambda i: {"score[gte]": str(low(i)), "score[lt]": str(low(i) + SCORES // 10), "limit": str(PAGE)},
                ),
                page(
                    view_url(t, score),
                    lambda i: {
                        "startkey": f"[{low(i)}]",
                        "endkey": f"[{low(i) + SCORES // 10}]",
                        "inclusive_end": "false",
                        **docs,
                    },
                ),
            ),
            f"page {DEEP} deep": (
                page(f"{base}/v1/{TYPE}", lambda i: {"limit": str(PAGE), "cursor": self.cursor}),
                page(
                    view_url(t, f"ds_{TYPE}_v1"),
                    lambda i: {"startkey": key, "startkey_docid": docid, "skip": "1", **docs},
                ),
            ),
        }


async def read_latencies(target: Target, requests: int) -> dict[str, dict]:
    reads = Reads(target)
    auth = {"Authorization": target.couch.authorization}
    out: dict[str, dict] = {}
    async with session_for(1, NO_CACHE) as side, session_for(1, auth) as direct:
        await reads.prepare(side, direct)
        for name, (through, straight) in reads.calls().items():
            row = {}
            for label, session, call in (("direct", direct, straight), ("sidecar", side, through)):
                await drive(session, call, min(20, requests), 1)  # warm-up
                row[label] = (await drive(session, call, requests, 1)).summary()
            out[name] = row
            log(
                f"  {name:<14} p50 sidecar {row['sidecar']['p50_ms']:7.2f} ms, direct {row['direct']['p50_ms']:7.2f} ms"
            )
    return out
