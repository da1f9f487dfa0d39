"""Helpers the tests share (fixtures live in conftest.py): servers, sidecars, commands.
The submodules hold the rest: ``metrics`` (reading ``/_metrics``), ``documents`` (sample
bodies, the spec-checking client), ``conflicts`` (documents of the conflict models, forks)
and ``fakes`` (a scripted CouchDB transport). Test modules never import each other."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from faults import FaultProxy
from openapi_check import SpecChecker
from tornado.testing import bind_unused_port

from data_service.config import Config
from data_service.server import build

ROOT = Path(__file__).resolve().parents[2]  # the repository
sys.path.insert(0, str(ROOT / "scripts"))
import devcouch  # noqa: E402

SAMPLE_MODELS = ROOT / "models" / "sample.yaml"


async def install_design_docs(db, models_path=SAMPLE_MODELS, guard: bool = True) -> None:
    """What ``data-service install`` puts in place, without the rest of the installer.
    ``guard=False`` leaves out the validate_doc_update: pouchdb-server's validation plugin
    replaces the ``_revisions`` of every ``new_edits: false`` write (replication's too)
    with the stored document's, which silently drops new revisions, whenever a database
    has one. Apache CouchDB has no such problem."""
    from data_service import design
    from data_service.models import load_models

    for name, doc in design.design_docs(load_models(models_path)).items():
        if guard or name != design.GUARD_NAME:
            await db.put_design(name, doc)


async def put_on_every_copy(db, doc: dict) -> dict:
    """PUT ``doc`` straight into CouchDB with ``w`` = the number of copies (n). A plain 201 on a
    cluster means w (2 of 3) copies hold the write; the third gets it shortly after. Views and
    range reads of ``_all_docs`` read one copy per shard range, and a write with a stale
    ``_rev`` that reaches the lagging copy first is accepted there (202, a conflict). A 201
    with w = n means every copy holds it. (Servers without ``cluster`` info ignore ``w``.)"""
    response = await db.couch.request("PUT", db._doc_path(doc["_id"]), params={"w": await db.copies()}, json=doc)
    assert response.status == 201, response.status
    return response.json()


async def bulk_on_every_copy(db, docs: list[dict]) -> list[dict]:
    """``_bulk_docs`` with ``w`` = n, as ``put_on_every_copy`` does for one document: a view read
    right after it reads one copy per shard range, which then holds every document."""
    response = await db.couch.request(
        "POST", db._path("_bulk_docs"), params={"w": await db.copies()}, json={"docs": docs}
    )
    assert response.status == 201 and all("rev" in result for result in response.json()), response.body
    return response.json()


def single_copy_database(couch):
    """A database with one copy per shard range (``n=1``; on a cluster its shards still spread
    over the nodes, so pages merge across shards), dropped afterwards. For tests of query
    semantics, not replica lag: on a replicated database a view is read from one copy per shard
    range, which may not yet hold a write acknowledged a moment ago (queries are eventually
    consistent there, see the README). Servers without clustering ignore ``n``."""
    return database_with(couch, n=1)


@contextlib.asynccontextmanager
async def database_with(couch, **options: int):
    """A database created with ``options`` (``n`` copies, ``q`` shards; servers without
    clustering ignore them), dropped afterwards."""
    from data_service.couchdb.transport import path

    database = couch.database(unique_name())
    await couch.request("PUT", path(database.name), params=options)
    try:
        yield database
    finally:
        await database.drop(missing_ok=True)


def run_command(config: Config, *args: str) -> subprocess.CompletedProcess:
    """``data-service <args>`` against ``config``'s CouchDB and database, as an operator runs
    it: the password only in the environment. Never a traceback, never the password."""
    flags = [f"--couchdb={config.couchdb_url}", f"--database={config.database}", f"--keys-dir={config.keys_dir}"]
    flags.append(f"--couchdb-transport={config.couchdb_transport}")
    if config.couchdb_user:
        flags.append(f"--couchdb-user={config.couchdb_user}")
    if config.deployment_id:
        flags.append(f"--deployment-id={config.deployment_id}")
    if not config.accept_v1:
        flags.append("--refuse-v1")
    env = {**os.environ, "DATA_SERVICE_COUCHDB_PASSWORD": config.couchdb_password or ""}
    result = subprocess.run(
        [sys.executable, "-m", "data_service", *args, *flags], env=env, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in result.stderr, result.stderr
    if config.couchdb_password:
        assert config.couchdb_password not in result.stdout + result.stderr
    return result


class CouchScript:
    """The shared Apache CouchDB test script (``$COUCHDB_SCRIPT``) on one instance
    directory. It blocks: a test whose event loop also runs a sidecar calls it through
    ``asyncio.to_thread``. Its stdout is an admin URL, so it never goes into a message."""

    def __init__(self, directory) -> None:
        self.directory = str(directory)

    def __call__(self, *args: str) -> str:
        command = [os.environ["COUCHDB_SCRIPT"], *args, f"--dir={self.directory}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"couchdb {' '.join(args)} --dir={self.directory}: {result.stderr[-3000:]}"
        return result.stdout.strip()

    def url(self, node: int = 1) -> str:
        """``http://admin:…@127.0.0.1:PORT`` of ``node``."""
        return self("url", f"--node={node}")


def one_line(text: str) -> str:
    """The one line of a startup mistake's stderr (never a traceback)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def dead_port() -> int:
    """A loopback port with nothing listening (a stopped server)."""
    return devcouch.free_port()


@contextlib.asynccontextmanager
async def running_app(config: Config, spans=None):
    """The real app on a free loopback port; yields (base URL, its Context)."""
    ctx, server = build(config, spans)
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    feed = asyncio.create_task(ctx.store.follow_changes())  # the read cache, as serve keeps it
    try:
        yield f"http://127.0.0.1:{port}", ctx
    finally:
        feed.cancel()
        with contextlib.suppress(BaseException):
            await feed
        server.stop()
        await server.close_all_connections()
        await ctx.store.aclose()


async def proxied(config: Config):
    """A started ``FaultProxy`` to ``config``'s CouchDB and ``config`` pointing through it."""
    proxy = FaultProxy.to(config.couchdb_url)
    await proxy.start()
    return proxy, replace(config, couchdb_url=proxy.url)


@contextlib.asynccontextmanager
async def running_sidecar(config: Config):
    """``running_app`` when only the base URL matters."""
    async with running_app(config) as (base, _):
        yield base


class Api:
    """An HTTP client for the sidecar that checks every response against the
    OpenAPI spec the sidecar itself serves (with the declared types)."""

    def __init__(self, session, base: str, checker) -> None:
        self.session, self.base, self.checker = session, base, checker

    async def request(
        self, method: str, path: str, *, json=None, data: bytes | None = None, headers: dict | None = None
    ):
        headers = dict(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            headers.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.base + path, data=data, headers=headers) as resp:
            raw = await resp.read()
            self.checker.check(method, path, resp.status, resp.headers, raw)
            return Reply(resp.status, resp.headers, orjson.loads(raw) if raw else None)


async def spec_api(session, base: str) -> Api:
    """An ``Api`` of the sidecar at ``base``, checking against the spec it serves."""
    async with session.get(f"{base}/openapi.json") as resp:
        return Api(session, base, SpecChecker(await resp.json()))


@dataclass
class Reply:
    status: int
    headers: Any
    body: Any

    @property
    def etag(self) -> str:
        return self.headers["ETag"]


@dataclass
class Served:
    """A ``data-service serve`` process (see ``serving``); its stdout is the log."""

    process: asyncio.subprocess.Process
    base: str
    port: int
    log_path: Path
    stderr_path: Path

    def log_lines(self) -> list[dict]:
        """Every stdout line, parsed: each must be one JSON object."""
        return [orjson.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]


@contextlib.asynccontextmanager
async def serving(config: Config, tmp_path: Path, *flags: str, env: dict | None = None, launcher: tuple = ()):
    """``data-service serve`` as an operator runs it (password in the environment, the
    log on stdout, not a terminal) on a free port, ready when ``/_health`` answers;
    killed at the end if it is still running. One worker and no index warmer unless
    ``flags`` say otherwise; ``launcher``: a command it runs under (e.g. ``setpriv`` to
    run it as another user)."""
    port = devcouch.free_port()
    args = [f"--couchdb={config.couchdb_url}", f"--database={config.database}", f"--keys-dir={config.keys_dir}"]
    args += [f"--models={config.models_path}", f"--port={port}", "--reconcile-interval=0"]
    args.append(f"--couchdb-transport={config.couchdb_transport}")
    if not any(flag.startswith("--workers") for flag in flags):
        args.append("--workers=1")  # one process: its metrics and log are the whole story
    if not any(flag.startswith("--warm-interval") for flag in flags):
        args.append("--warm-interval=0")  # no index warmer querying views beside the test
    if config.couchdb_user:
        args.append(f"--couchdb-user={config.couchdb_user}")
    environment = {**os.environ, "DATA_SERVICE_COUCHDB_PASSWORD": config.couchdb_password or "", **(env or {})}
    log_path, stderr_path = tmp_path / "serve.log", tmp_path / "serve.err"
    with open(log_path, "wb") as out, open(stderr_path, "wb") as err:
        process = await asyncio.create_subprocess_exec(
            *launcher,
            sys.executable,
            "-m",
            "data_service",
            "serve",
            *args,
            *flags,
            env=environment,
            stdout=out,
            stderr=err,
        )
    served = Served(process, f"http://127.0.0.1:{port}", port, log_path, stderr_path)
    try:
        await _wait_ready(served)
        yield served
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _wait_ready(served: Served, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if served.process.returncode is not None:
            raise AssertionError(f"serve exited {served.process.returncode}: {served.stderr_path.read_text()[-2000:]}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise AssertionError("serve did not start listening in time")


async def until(check, what: str, timeout: float = 30.0) -> Any:
    """Poll the async ``check`` until it returns something true; fail naming ``what``
    after ``timeout`` seconds (a bound for a loaded machine, never a speed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if result := await check():
            return result
        assert loop.time() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.02)


async def run(*command: str, cwd=None, env=None) -> tuple[int, str]:
    """A command's exit status and output (stderr included), without blocking the event loop
    a sidecar under test runs on."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    return process.returncode, output.decode()
