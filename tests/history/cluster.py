"""The test bed on a running 3-node cluster (the shared script's, ``$COUCHDB_CLUSTER_DIR``):
keysets, the database installed with ``data-service install``, two ``data-service serve``
processes (``--workers=2``, default cache, ``--reconcile-interval=5``), A through a
FaultProxy to node 1 and B through another to node 2; and at the end the final sweep
(``data-service reconcile``) and the final state as every node and both sidecars see it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from faults import FaultProxy
from support import CouchScript, devcouch

from data_service.couchdb import CouchDB, CouchDBError
from data_service.couchdb.client import split_credentials
from data_service.couchdb.transport import path

from .record import Final, Version

MODELS = Path(__file__).resolve().parent / "models.yaml"
TYPE_TAG = "ledger_v1.0"
NODES = (1, 2, 3)
SETTLE = 60.0  # seconds the final state may take to agree


@dataclass
class Sidecar:
    name: str
    node: int
    proxy: FaultProxy
    log: Path
    port: int = field(default_factory=devcouch.free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The serving processes (children of the supervisor)."""
        assert self.process is not None
        pid = self.process.pid
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def kill_worker(self) -> int:
        victim = self.workers()[0]
        os.kill(victim, signal.SIGKILL)
        return victim

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class Bed:
    def __init__(self, script: CouchScript, workdir: Path, database: str, seed: int) -> None:
        self.script, self.workdir, self.database = script, workdir, database
        self.urls = {node: script.url(node) for node in NODES}  # admin credentials inside
        self.admin_user, self.admin_password = split_credentials(self.urls[1])[1] or ("", "")
        self.keys = workdir / "keys"
        self.sidecars = [
            Sidecar(name, node, FaultProxy.to(self.urls[node], seed=seed + node), workdir / f"sidecar-{name}.log")
            for name, node in (("A", 1), ("B", 2))
        ]

    def node_url(self, node: int) -> str:
        return split_credentials(self.urls[node])[0]

    # -- setup and teardown -------------------------------------------------------------

    async def setup(self) -> None:
        await self.start_nodes(*NODES)
        await self.command("keys", "create", f"--keys-dir={self.keys}", plain=True)
        await self.command("install", f"--models={MODELS}")
        for sidecar in self.sidecars:
            await sidecar.proxy.start()
            await self.serve(sidecar)

    async def serve(self, sidecar: Sidecar) -> None:
        flags = [
            *self.flags(sidecar.proxy.url),
            f"--models={MODELS}",
            f"--port={sidecar.port}",
            "--workers=2",
            "--reconcile-interval=5",
        ]
        with open(sidecar.log, "ab") as out:
            sidecar.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "data_service", "serve", *flags, env=self.env(), stdout=out, stderr=out
            )
        await until(lambda: answers(sidecar.base + "/_health?quick=false"), f"sidecar {sidecar.name} is ready", 60)

    async def teardown(self, keep_database: bool) -> None:
        for sidecar in self.sidecars:
            await sidecar.stop()
            await sidecar.proxy.close()
        if not keep_database:
            async with CouchDB(self.urls[1]) as couch:
                await couch.database(self.database).drop(missing_ok=True)

    def flags(self, couchdb_url: str) -> list[str]:
        return [
            f"--couchdb={couchdb_url}",
            f"--database={self.database}",
            f"--keys-dir={self.keys}",
            f"--couchdb-user={self.admin_user}",
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATA_SERVICE_COUCHDB_PASSWORD": self.admin_password}

    async def command(self, *args: str, plain: bool = False) -> subprocess.CompletedProcess:
        """``data-service ARGS`` against node 1 (``plain``: without the CouchDB flags)."""
        flags = [] if plain else self.flags(self.node_url(1))
        argv = [sys.executable, "-m", "data_service", *args, *flags]
        result = await asyncio.to_thread(subprocess.run, argv, env=self.env(), capture_output=True, text=True)
        if result.returncode not in (0, 1):
            raise RuntimeError(f"data-service {args[0]} exited {result.returncode}: {result.stderr[-2000:]}")
        return result

    # -- nodes --------------------------------------------------------------------------

    async def start_nodes(self, *nodes: int) -> None:
        for node in nodes:
            await asyncio.to_thread(self.script, "start-node", str(node))

    async def stop_nodes(self, *nodes: int) -> None:
        for node in nodes:
            await asyncio.to_thread(self.script, "stop-node", str(node))

    async def kill_node(self, node: int) -> None:
        await asyncio.to_thread(self.script, "kill-node", str(node))

    # -- the end ------------------------------------------------------------------------

    async def restore(self) -> None:
        """Every fault undone: proxies calm and up, sidecars and nodes running."""
        for sidecar in self.sidecars:
            sidecar.proxy.clear()
            sidecar.proxy.delay = 0.0
            await sidecar.proxy.up()
        await self.start_nodes(*NODES)
        for sidecar in self.sidecars:
            url = sidecar.base + "/_health?quick=false"
            await until(lambda url=url: answers(url), f"sidecar {sidecar.name} is ready again", 60)

    async def final_state(self, ids: Iterable[str], notes: dict) -> Final:
        """Nodes settled, the final sweep, nodes settled again, both sidecars asked."""
        await until(self._nodes_agree, "the nodes agree", SETTLE, fail=False)
        swept = await self.command("reconcile", f"--models={MODELS}")
        notes["reconcile"] = (swept.returncode, swept.stdout.strip().splitlines()[-3:])
        final = Final()
        await until(lambda: self._settled(final), "the nodes agree and hold no conflicts", SETTLE, fail=False)
        asked = set(ids)
        await until(lambda: self._sidecars_agree(final, asked), "the sidecars agree with node 1", 30, fail=False)
        return final

    async def _nodes(self) -> dict[int, dict]:
        states = {}
        for node in NODES:
            async with CouchDB(self.urls[node]) as couch:
                listing = await couch.json(
                    "GET", path(self.database, "_all_docs"), params={"include_docs": True, "conflicts": True}
                )
            states[node] = {row["id"]: row["doc"] for row in listing["rows"] if row["doc"].get("type") == TYPE_TAG}
        return states

    async def _nodes_agree(self) -> bool:
        try:
            states = await self._nodes()
        except CouchDBError:
            return False
        revs = [{doc: body["_rev"] for doc, body in state.items()} for state in states.values()]
        return all(rev == revs[0] for rev in revs)

    async def _settled(self, final: Final) -> bool:
        try:
            states = await self._nodes()
        except CouchDBError:
            return False
        first = states[1]
        final.docs = {doc: Version.shown(body["_rev"], body) for doc, body in first.items()}
        final.keys = {doc: body["key"] for doc, body in first.items() if body.get("key")}
        final.conflicts = {doc: body["_conflicts"] for doc, body in first.items() if body.get("_conflicts")}
        final.nodes = {f"node {n}": {doc: body["_rev"] for doc, body in state.items()} for n, state in states.items()}
        return not final.conflicts and all(state == final.nodes["node 1"] for state in final.nodes.values())

    async def _sidecars_agree(self, final: Final, ids: set[str]) -> bool:
        """Both sidecars answer what node 1 holds now: read again, since a request a client
        gave up on may still be at work in a sidecar (a write held up by CouchDB for its
        request timeout landed after the nodes had agreed, in a CI run)."""
        settled = await self._settled(final)  # a node's disagreement is reported on its own
        if "node 1" not in final.nodes:  # no node answered yet
            return False
        reference = final.nodes["node 1"]
        async with aiohttp.ClientSession() as session:
            for sidecar in self.sidecars:
                final.sidecars[sidecar.name] = seen = {}
                for doc in sorted(ids | set(final.docs)):
                    seen[doc] = await shown_rev(session, f"{sidecar.base}/v1/ledger/{doc}")
        return settled and all({d: r for d, r in seen.items() if r} == reference for seen in final.sidecars.values())


async def shown_rev(session: aiohttp.ClientSession, url: str) -> str | None:
    """The revision a GET answers (None for 404; anything else named)."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status == 200:
                return resp.headers["ETag"].strip('"')
            return None if resp.status == 404 else f"status {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


async def answers(url: str) -> bool:
    """``url`` answers 200."""
    try:
        async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float, fail: bool = True) -> bool:
    """Poll ``check`` until true; past ``timeout`` s raise (or, with ``fail=False``, return
    False: the final state is then recorded as it stands and the checker reports it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            if fail:
                raise TimeoutError(f"not within {timeout} s: {what}")
            return False
        await asyncio.sleep(0.5)
    return True
