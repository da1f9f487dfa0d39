#!/usr/bin/env python3
"""Benchmark the data-service sidecar against direct CouchDB, in one run.

For each workload (get, query, create, bulk, update) and each concurrency, the same number
of requests goes first straight to CouchDB, then through the sidecar (a real
``data-service serve`` subprocess), against the same fresh database. Reports
requests/s, p50 and p99 latency for both, the sidecar/direct ratios, and the
sidecar's memory (VmRSS, VmHWM) after each workload.

CouchDB is ``--couchdb-url`` (admin credentials in the URL), else
``$COUCHDB_URL``, else a private in-memory pouchdb-server started for the run
(``scripts/devcouch.py``). The database ``bench_<random>`` is created for the
run and deleted at the end, also on failure or Ctrl-C.

This script only measures: it asserts nothing about speed. It exits 1 when
more than 1% of the requests of any measurement failed (non-2xx or no answer).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent  # the repository
sys.path.insert(0, str(ROOT / "scripts"))
import devcouch  # noqa: E402

SIDECAR = ROOT / ".venv" / "bin" / "data-service"
MODELS = ROOT / "models" / "sample.yaml"
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
WORKLOADS = ("get", "get-nocache", "query", "create", "bulk", "update")
BULK = 50  # notes created per request of the bulk workload
PAGE = 50  # items per query page
PREHEAT_CONCURRENCY = 10
C1_CAP = 500  # requests at concurrency 1: latency-bound, so fewer keep the run short
GET_DOCS = 100  # docs read round-robin by the get workload
BODY = "x" * 200
NOTE_TAG = "note_v1.0"  # the envelope's type tag for models/sample.yaml's note 1.0
ERROR_LIMIT = 0.01  # more failed requests than this fraction fails the run


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- CouchDB admin calls (stdlib, so cleanup never depends on the event loop) ----------


@dataclass(frozen=True)
class Couch:
    url: str  # without credentials
    user: str
    password: str
    pid: int | None = None  # when this run started it (pouchdb-server)

    @classmethod
    def parse(cls, url: str, pid: int | None = None) -> Couch:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            sys.exit(f"bench: {url!r} is not an http(s) URL")
        if not parts.username:
            sys.exit("bench: the CouchDB URL needs admin credentials (http://user:password@host:port)")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            netloc += f":{parts.port}"
        bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return cls(bare, urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""), pid)

    @property
    def authorization(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def request(self, method: str, path: str) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": self.authorization, "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None


# -- the sidecar subprocess ------------------------------------------------------------


class Sidecar:
    def __init__(self, couch: Couch, database: str, port: int, logfile: Path, extra: list[str]) -> None:
        self.couch, self.database, self.port, self.logfile = couch, database, port, logfile
        self.command = [
            str(SIDECAR),
            "serve",
            f"--couchdb={couch.url}",
            f"--couchdb-user={couch.user}",
            f"--database={database}",
            f"--models={MODELS}",
            f"--port={port}",
            "--log-level=warning",
            *extra,
        ]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, seconds: float = 30.0) -> None:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=sidecar_env(self.couch),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + seconds
        status = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sidecar exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/_health?quick=false", timeout=2) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            if status == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"the sidecar was not ready after {seconds:.0f}s (last /_health?quick=false: {status}):\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            log(f"bench: the sidecar (pid {self.proc.pid}) ignored SIGTERM for 10 s; killing it")
            self.proc.kill()
            return self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The serving processes: the sidecar itself, or its workers (``--workers``)."""
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            children = []
        return children or [self.proc.pid]

    def cpu_seconds(self) -> float | None:
        times = [cpu_seconds(pid) for pid in self.pids()]
        return None if None in times else sum(t for t in times if t is not None)

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) in KiB, from /proc/<pid>/status: of the largest
        worker when there are several."""
        assert self.proc is not None
        rss, hwm = 0, 0
        for pid in self.pids():
            out = {}
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        key, _, value = line.partition(":")
                        if key in ("VmRSS", "VmHWM"):
                            out[key] = int(value.split()[0])
            except OSError:
                pass
            if len(out) < 2 or self.proc.poll() is not None:
                raise RuntimeError(f"the sidecar (pid {pid}) is gone")
            rss, hwm = max(rss, out["VmRSS"]), max(hwm, out["VmHWM"])
        return {"rss_kib": rss, "hwm_kib": hwm}


def sidecar_env(couch: Couch) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COUCHDB_URL"}
    env["DATA_SERVICE_COUCHDB_PASSWORD"] = couch.password  # never on the command line
    return env


def prepare_sidecar(couch: Couch, database: str, directory: Path, steps: list[str]) -> list[str]:
    """What this version of the sidecar needs before ``serve``; returns extra ``serve`` flags.

    - Tink keysets (``--keys-dir``): a fresh set in ``directory`` (``data-service keys create``);
    - an installer (``data-service install``): run on the fresh database, so the design docs
      and ``_security`` are there (readiness checks them). Its time is not measured.
    Both are skipped for a sidecar whose usage does not mention them."""
    usage = subprocess.run([str(SIDECAR), "--help"], capture_output=True, text=True).stdout
    extra: list[str] = []

    def step(*command: str) -> None:
        done = subprocess.run(
            [str(SIDECAR), *command],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=sidecar_env(couch),
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
        steps.append(" ".join(command[:2]) if command[0] == "keys" else command[0])
        if done.returncode != 0:
            raise RuntimeError(
                f"data-service {command[0]} failed ({done.returncode}):\n{(done.stdout + done.stderr).strip()}"
            )

    if "--keys-dir" in usage:
        keys = directory / "keys"
        step("keys", "create", f"--keys-dir={keys}")
        extra.append(f"--keys-dir={keys}")
    if "data-service install" in usage:
        step(
            "install",
            *extra,
            f"--models={MODELS}",
            f"--couchdb={couch.url}",
            f"--couchdb-user={couch.user}",
            f"--database={database}",
            "--log-level=warning",
        )
    return extra


def couchdb_pid(couch_dir: str, said: str) -> int | None:
    """The Erlang VM serving from ``couch_dir`` (its command line names the directory),
    else the pid the start script printed."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command and command[0].endswith(b"beam.smp") and any(couch_dir.encode() in part for part in command):
                return int(entry.name)
    found = re.search(r"pid (\d+)", said)
    return int(found.group(1)) if found else None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (its threads included)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- load generation -------------------------------------------------------------------


Call = Callable[[aiohttp.ClientSession, int, int], Awaitable[int]]  # (session, i, worker) -> status


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


JSON_HEADERS = {"Content-Type": "application/json"}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Targets:
    """The request functions of each workload, direct and through the sidecar."""

    def __init__(self, couch: Couch, database: str, sidecar_url: str) -> None:
        self.db_url = f"{couch.url}/{database}"
        self.sidecar_url = sidecar_url
        self.get_ids: list[str] = []
        # What a direct write sends: a note as the sidecar stores it (type tag, meta, signature
        # envelope, properties), copied from one the sidecar wrote. Same size and shape, and it
        # passes the installer's validate_doc_update (which checks the envelope's shape; it
        # cannot check the MAC). Direct docs are never read through the sidecar.
        self.template: dict[str, Any] = {"type": NOTE_TAG, "meta": {}, "title": "bench", "body": BODY}
        self.direct_docs: list[list[str]] = []  # [id, rev] per update worker
        self.sidecar_docs: list[list[str]] = []  # [id, etag] per update worker

    # setup (not measured)

    def envelope(self, docid: str | None = None, rev: str | None = None, counter: int | None = None) -> dict:
        at = now()
        doc: dict[str, Any] = {}
        if docid is not None:
            doc["_id"] = docid
        if rev is not None:
            doc["_rev"] = rev
        doc.update(self.template)
        doc["meta"] = {**self.template.get("meta", {}), "created_at": at, "updated_at": at}
        if counter is not None:
            doc["counter"] = counter
        return doc

    async def prepare_get(self, session: aiohttp.ClientSession, direct: aiohttp.ClientSession) -> None:
        for _ in range(GET_DOCS):
            async with session.post(
                f"{self.sidecar_url}/v1/note", headers=JSON_HEADERS, data=orjson.dumps({"title": "bench", "body": BODY})
            ) as resp:
                body = await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"creating a note through the sidecar: {resp.status} {body[:300]!r}")
                self.get_ids.append(orjson.loads(body)["id"])
        async with direct.get(f"{self.db_url}/{self.get_ids[0]}") as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"reading a note from CouchDB: {resp.status} {body[:300]!r}")
            self.template = {k: v for k, v in orjson.loads(body).items() if not k.startswith("_")}

    async def prepare_update(self, direct: aiohttp.ClientSession, sidecar: aiohttp.ClientSession, workers: int) -> None:
        for _ in range(workers):
            docid = uuid.uuid4().hex
            async with direct.put(
                f"{self.db_url}/{docid}", headers=JSON_HEADERS, data=orjson.dumps(self.envelope())
            ) as resp:
                body = await resp.read()
                if resp.status not in (201, 202):
                    raise RuntimeError(f"creating a doc in CouchDB: {resp.status} {body[:300]!r}")
                self.direct_docs.append([docid, orjson.loads(body)["rev"]])
            async with sidecar.post(
                f"{self.sidecar_url}/v1/note", headers=JSON_HEADERS, data=orjson.dumps({"title": "bench", "body": BODY})
            ) as resp:
                body = await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"creating a note through the sidecar: {resp.status} {body[:300]!r}")
                self.sidecar_docs.append([orjson.loads(body)["id"], resp.headers["ETag"]])

    # get

    async def get_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(f"{self.db_url}/{self.get_ids[i % len(self.get_ids)]}") as resp:
            await resp.read()
            return resp.status

    async def get_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(f"{self.sidecar_url}/v1/note/{self.get_ids[i % len(self.get_ids)]}") as resp:
            await resp.read()
            return resp.status

    # get-nocache: the same reads, the sidecar's read cache bypassed (Cache-Control: no-cache)

    async def get_nocache_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        return await self.get_direct(session, i, w)

    async def get_nocache_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(
            f"{self.sidecar_url}/v1/note/{self.get_ids[i % len(self.get_ids)]}", headers={"Cache-Control": "no-cache"}
        ) as resp:
            await resp.read()
            return resp.status

    # query: the first page of 50 notes from the type's listing view (one design doc per view)

    async def query_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(
            f"{self.db_url}/_design/ds_note_v1/_view/index",
            params={"startkey": "[]", "endkey": "[{}]", "include_docs": "true", "limit": str(PAGE)},
        ) as resp:
            await resp.read()
            return resp.status

    async def query_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(f"{self.sidecar_url}/v1/note", params={"limit": str(PAGE)}) as resp:
            await resp.read()
            return resp.status

    # create

    async def create_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.put(
            f"{self.db_url}/{uuid.uuid4().hex}", headers=JSON_HEADERS, data=orjson.dumps(self.envelope())
        ) as resp:
            await resp.read()
            return resp.status

    async def create_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.post(
            f"{self.sidecar_url}/v1/note", headers=JSON_HEADERS, data=orjson.dumps({"title": "bench", "body": BODY})
        ) as resp:
            await resp.read()
            return resp.status

    async def settle(self, direct: aiohttp.ClientSession) -> None:
        """Bring every view index up to date, so that a measurement never pays for indexing
        the documents an earlier one wrote (the sidecar's conflict sweep queries a view
        every minute, and CouchDB indexes on query)."""
        params = {"startkey": '"_design/"', "endkey": '"_design0"', "include_docs": "true"}
        async with direct.get(f"{self.db_url}/_all_docs", params=params) as resp:
            rows = (await resp.json())["rows"] if resp.status == 200 else []
        for row in rows:
            for view in row["doc"].get("views", {}):
                async with direct.get(f"{self.db_url}/{row['id']}/_view/{view}", params={"limit": "0"}) as resp:
                    await resp.read()

    # bulk: BULK new notes per request (CouchDB's _bulk_docs / the sidecar's POST /v1/note/_bulk)

    async def bulk_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        docs = [{"_id": uuid.uuid4().hex, **self.envelope()} for _ in range(BULK)]
        async with session.post(
            f"{self.db_url}/_bulk_docs", headers=JSON_HEADERS, data=orjson.dumps({"docs": docs})
        ) as resp:
            body = await resp.read()
            return resp.status if resp.status != 201 or all("ok" in r for r in orjson.loads(body)) else 500

    async def bulk_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        items = [{"op": "create", "body": {"title": "bench", "body": BODY}} for _ in range(BULK)]
        async with session.post(
            f"{self.sidecar_url}/v1/note/_bulk", headers=JSON_HEADERS, data=orjson.dumps({"items": items})
        ) as resp:
            body = await resp.read()
            ok = resp.status == 200 and all(r.get("status") == 201 for r in orjson.loads(body)["results"])
            return resp.status if ok or resp.status != 200 else 500

    # update: worker w owns doc w; a failed write re-reads the revision (not timed apart)

    async def update_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        state = self.direct_docs[w]
        async with session.put(
            f"{self.db_url}/{state[0]}", headers=JSON_HEADERS, data=orjson.dumps(self.envelope(state[0], state[1], i))
        ) as resp:
            body = await resp.read()
            if 200 <= resp.status < 300:
                state[1] = orjson.loads(body)["rev"]
                return resp.status
        async with session.get(f"{self.db_url}/{state[0]}") as again:
            state[1] = orjson.loads(await again.read())["_rev"]
        return resp.status

    async def update_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        state = self.sidecar_docs[w]
        async with session.put(
            f"{self.sidecar_url}/v1/note/{state[0]}",
            headers={**JSON_HEADERS, "If-Match": state[1]},
            data=orjson.dumps({"title": "bench", "body": BODY, "counter": i}),
        ) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                state[1] = resp.headers["ETag"]
                return resp.status
        async with session.get(f"{self.sidecar_url}/v1/note/{state[0]}") as again:
            await again.read()
            state[1] = again.headers.get("ETag", state[1])
        return resp.status


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


# -- machine and report ----------------------------------------------------------------


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


def bulk_lines(results: list[dict]) -> list[str]:
    """Documents per second of the bulk workload against single creates at the same concurrency."""
    create = {row["concurrency"]: row for row in results if row["workload"] == "create"}
    lines = []
    for row in results:
        single = create.get(row["concurrency"])
        if row["workload"] != "bulk" or single is None:
            continue
        docs = {target: row[target]["rps"] * BULK for target in ("direct", "sidecar")}
        lines.append(
            f"- bulk c={row['concurrency']}: {BULK} notes per request; sidecar {docs['sidecar']:.0f} docs/s = "
            f"{docs['sidecar'] / single['sidecar']['rps']:.1f}x its single create ({single['sidecar']['rps']:.0f}/s); "
            f"direct _bulk_docs {docs['direct']:.0f} docs/s."
        )
    return ["", *lines] if lines else []


def markdown(report: dict) -> str:
    config = report["config"]
    out = [
        f"Machine: {machine_line(report['machine'])}",
        f"CouchDB: {config['couchdb']}; requests per measurement: "
        + ", ".join(f"c={c}: {requests_at(c, config['requests'])}" for c in config["concurrency"])
        + f" (each after {report['config']['warmup']} warm-up requests; {report['config']['preheat']} "
        "preheat requests per workload and target at the start)",
        "",
        "| workload | c | requests | direct req/s | sidecar req/s | ratio req/s | direct p50 ms | "
        "sidecar p50 ms | ratio p50 | direct p99 ms | sidecar p99 ms | errors d/s | sidecar RSS / peak MiB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in report["results"]:
        d, s, mem = row["direct"], row["sidecar"], row["sidecar_memory"]
        out.append(
            f"| {row['workload']} | {row['concurrency']} | {row['requests']} | {d['rps']:.0f} | {s['rps']:.0f} | "
            f"{row['ratio']['rps']:.2f} | {d['p50_ms']:.2f} | {s['p50_ms']:.2f} | {row['ratio']['p50']:.2f} | "
            f"{d['p99_ms']:.2f} | {s['p99_ms']:.2f} | {d['errors']}/{s['errors']} | "
            f"{mem['rss_kib'] / 1024:.1f} / {mem['hwm_kib'] / 1024:.1f} |"
        )
    out += bulk_lines(report["results"])
    base = report["sidecar_memory_at_start"]
    start, end = report["machine"]["loadavg_at_start"], report["loadavg_at_end"]
    out += [
        "",
        f"Load average (1/5/15 min) at start {start}, at end {end}: the client, the sidecar and "
        "CouchDB share these CPUs; anything else running skews the numbers.",
        f"Sidecar: {config['workers']} worker(s); memory at start (after the readiness check, of the "
        f"largest worker): RSS {base['rss_kib'] / 1024:.1f} MiB, peak {base['hwm_kib'] / 1024:.1f} MiB.",
        "",
        "CPU ms per request (client / sidecar / couchdb; couchdb only for a server this run started):",
        "",
        "| workload | c | direct | sidecar |",
        "|---|--:|--|--|",
    ]

    def cpu(summary: dict) -> str:
        return " / ".join("-" if v is None else f"{v:.2f}" for v in summary["cpu_ms_per_request"].values())

    for row in report["results"]:
        out.append(f"| {row['workload']} | {row['concurrency']} | {cpu(row['direct'])} | {cpu(row['sidecar'])} |")
    cache = report.get("cache") or {}
    if stale := cache.get("staleness"):
        out += [
            "",
            f"Staleness (a write straight to CouchDB until the sidecar's cache answers it, {stale['samples']} "
            f"samples): p50 {stale['p50_ms']} ms, max {stale['max_ms']} ms.",
        ]
    if full := cache.get("cache_full"):
        out += [
            "",
            f"Cache full ({full['documents']} notes of 10,000 characters read once): {full.get('entries', 0):.0f} "
            f"entries in all, {full.get('bytes', 0) / 1048576:.1f} MiB in the fullest worker; sidecar RSS "
            f"{full['rss_kib'] / 1024:.1f} MiB (peak {full['hwm_kib'] / 1024:.1f} MiB, largest worker).",
        ]
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------


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


def concurrency_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated positive integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated positive integers")
    return values


def workload_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [v for v in values if v not in WORKLOADS]
    if not values or unknown:
        raise argparse.ArgumentTypeError(f"workloads are {', '.join(WORKLOADS)}")
    return values


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--couchdb-url",
        default=os.environ.get("COUCHDB_URL"),
        help="CouchDB with admin credentials, http://user:password@host:port "
        "(default: $COUCHDB_URL, else a private in-memory pouchdb-server)",
    )
    parser.add_argument(
        "--requests",
        type=positive,
        default=2000,
        help=f"measured requests per workload, target and concurrency (default 2000; "
        f"at concurrency 1 at most {C1_CAP})",
    )
    parser.add_argument(
        "--concurrency", type=concurrency_list, default=[1, 50], help="comma-separated concurrencies (default 1,50)"
    )
    parser.add_argument(
        "--warmup", type=positive, default=50, help="unmeasured requests before each measurement (default 50)"
    )
    parser.add_argument(
        "--preheat",
        type=non_negative,
        default=300,
        help="unmeasured requests per workload and target once at the start, to warm up "
        "CouchDB and the sidecar (default 300; 0 skips)",
    )
    parser.add_argument(
        "--workloads",
        type=workload_list,
        default=list(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--port", type=int, help="port for the sidecar (default: a free one)")
    parser.add_argument(
        "--workers", type=non_negative, default=0, help="the sidecar's --workers (default 0: its default, one per CPU)"
    )
    parser.add_argument(
        "--cache-size", type=non_negative, default=64, help="the sidecar's --cache-size in MB (default 64)"
    )
    parser.add_argument(
        "--couchdb-transport",
        help="the sidecar's --couchdb-transport, e.g. httptools (default: the sidecar's default)",
    )
    parser.add_argument(
        "--couchdb-script",
        type=Path,
        help="start a single-node CouchDB with this script (../shared/couchdb/couchdb: start/url/stop "
        "--dir=DIR) in a temporary directory, and stop and wipe it at the end",
    )
    parser.add_argument(
        "--staleness",
        type=non_negative,
        default=20,
        help="writes made straight in CouchDB to time until the sidecar's cache answers them (default 20; 0 skips)",
    )
    parser.add_argument(
        "--fill-cache",
        type=non_negative,
        default=0,
        help="after the workloads, fill the cache with this many MB of documents and read RSS (default 0: skip)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the JSON report (default {DEFAULT_JSON.relative_to(ROOT)})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM takes the Ctrl-C path, so everything started here is stopped and the database deleted.
    signal.signal(signal.SIGTERM, interrupt)
    started_at = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.couchdb_script:
            couch_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-couchdb-")))
            script = str(args.couchdb_script.resolve())
            started = subprocess.run(
                [script, "start", f"--dir={couch_dir}"], capture_output=True, text=True, timeout=300, check=True
            )
            stack.callback(
                subprocess.run, [script, "stop", f"--dir={couch_dir}", "--wipe"], capture_output=True, timeout=120
            )
            url = subprocess.run(
                [script, "url", f"--dir={couch_dir}"], capture_output=True, text=True, timeout=60, check=True
            ).stdout.strip()
            couch = Couch.parse(url, pid=couchdb_pid(str(couch_dir), started.stdout + started.stderr))
            where = f"started by {args.couchdb_script}"
        elif args.couchdb_url:
            couch = Couch.parse(args.couchdb_url)
            where = "given"
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-devcouch-")))
            dev = devcouch.start(tmp, memory=True)
            stack.callback(devcouch.stop, tmp)
            couch = Couch.parse(dev.admin_url, pid=dev.pid)
            where = f"private in-memory pouchdb-server, pid {dev.pid}"
        log(f"bench: CouchDB {couch.url} ({where})")
        machine = machine_info(couch)
        if machine["server"]["status"] != 200:
            log(f"bench: GET / on CouchDB answered {machine['server']['status']}")
            return 2

        database = f"bench_{uuid.uuid4().hex[:12]}"
        status, body = couch.request("PUT", f"/{database}")
        if status not in (201, 202):
            log(f"bench: creating database {database} answered {status} {body}")
            return 2

        def drop_database() -> None:
            code, _ = couch.request("DELETE", f"/{database}")
            log(
                f"bench: deleted database {database}"
                if code in (200, 202)
                else f"bench: deleting database {database} answered {code}"
            )

        stack.callback(drop_database)

        steps: list[str] = []  # what prepare_sidecar ran
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sidecar-")))
        try:
            extra = prepare_sidecar(couch, database, workdir, steps)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"bench: {exc}")
            return 2
        extra += [f"--workers={args.workers}", f"--cache-size={args.cache_size}"]
        if args.couchdb_transport:
            extra.append(f"--couchdb-transport={args.couchdb_transport}")
        sidecar = Sidecar(couch, database, args.port or devcouch.free_port(), workdir / "sidecar.log", extra)

        def stop_sidecar() -> None:
            code = sidecar.stop()
            if sidecar.proc is not None:
                log(f"bench: sidecar pid {sidecar.proc.pid} ended (exit status {code})")

        stack.callback(stop_sidecar)
        try:
            sidecar.start()
        except RuntimeError as exc:
            log(f"bench: {exc}")
            return 2
        log(f"bench: sidecar {sidecar.url} (pid {sidecar.proc.pid}), database {database}")
        memory_at_start = sidecar.memory()
        workers = len(sidecar.pids())
        try:
            results = run(run_workloads(args, couch, database, sidecar))
            cache = run(cache_measurements(args, couch, database, sidecar))
        except KeyboardInterrupt:
            log("bench: interrupted; cleaning up")
            return 130
        except RuntimeError as exc:
            log(f"bench: {exc}\n--- sidecar log ---\n{sidecar.log_tail()}")
            return 2
        if sidecar.proc.poll() is not None:
            log(f"bench: the sidecar died during the run ({sidecar.proc.returncode}):\n{sidecar.log_tail()}")
            return 2

    report = {
        "timestamp": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 1),
        "loadavg_at_end": loadavg(),
        "machine": machine,
        "config": {
            "couchdb": machine["server"]["kind"]
            + (
                " (started by --couchdb-script)"
                if args.couchdb_script
                else " (private, in memory)"
                if couch.pid
                else ""
            ),
            "requests": args.requests,
            "c1_cap": C1_CAP,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "preheat": args.preheat,
            "workloads": args.workloads,
            "get_docs": GET_DOCS,
            "body_chars": len(BODY),
            "workers": workers,
        },
        "sidecar_command": [Path(part).name if i == 0 else part for i, part in enumerate(sidecar.command)],
        "sidecar_preparation": [f"data-service {step}" for step in steps],
        "sidecar_memory_at_start": memory_at_start,
        "results": results,
        "cache": cache,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    log(f"bench: {report['duration_s']} s; JSON report in {args.json}")

    failed = [
        f"{row['workload']} c={row['concurrency']} {target}: {row[target]['errors']}/{row['requests']} "
        f"failed {row[target]['statuses']}"
        for row in results
        for target in ("direct", "sidecar")
        if row[target]["errors"] > ERROR_LIMIT * row["requests"]
    ]
    if failed:
        log("bench: FAILED: more than 1% of the requests failed in:\n  " + "\n  ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("bench: interrupted")
        sys.exit(130)
