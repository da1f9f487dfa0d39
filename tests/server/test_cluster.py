"""The sidecar on a 3-node Apache CouchDB cluster (databases n=3, q=2), its nodes stopped
and started with the shared script. The sidecar's writes ask every copy (``w`` = 3:
docs/consistency.md), so with a node down each write is stored on the live copies and
answered provisional (``Write-Quorum: not-met``), readiness says ``degraded``, and reads
and queries answer as usual; nodes back: every acknowledged document readable through
every node, readiness ``ok``.

Runs on the cluster the script runs in ``$COUCHDB_CLUSTER_DIR`` (``make test-cluster``
starts one); deselected without it or ``$COUCHDB_SCRIPT`` (conftest.py). The sidecar
under test talks to node 1. Every node is started again after each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import replace
from urllib.parse import urlencode

import pytest
from openapi_check import SpecChecker
from support import SAMPLE_MODELS, Api, CouchScript, running_sidecar
from support.documents import EVENTS

from data_service.couchdb import CouchDB, NotFound
from data_service.couchdb.client import split_credentials
from data_service.couchdb.transport import path
from data_service.design import design_docs
from data_service.models import load_models

pytestmark = pytest.mark.cluster

NODES = (1, 2, 3)
QUORUM = "Write-Quorum"
MERGE_PATCH = "application/merge-patch+json"
MODELS = load_models(SAMPLE_MODELS)


@pytest.fixture(scope="module")
def script() -> CouchScript:
    return CouchScript(os.environ["COUCHDB_CLUSTER_DIR"])


@pytest.fixture(scope="module")
def couchdb_url(script) -> str:
    """Node 1 of the cluster (overrides conftest's: whatever ``$COUCHDB_URL`` says, the
    ``couch``, ``db``, ``config`` and ``sidecar`` fixtures of this module use the cluster)."""
    return script.url(1)


class Cluster:
    def __init__(self, script: CouchScript) -> None:
        self.script = script

    async def stop(self, *nodes: int) -> None:
        for node in nodes:
            await asyncio.to_thread(self.script, "stop-node", str(node))

    async def start(self, *nodes: int) -> None:
        """Start the nodes (a running one is left alone); the script returns once each
        answers ``/_up`` and is connected to the others."""
        for node in nodes:
            await asyncio.to_thread(self.script, "start-node", str(node))

    def url(self, node: int) -> str:
        return self.script.url(node)


@pytest.fixture
async def cluster(script, db):
    """All nodes up, the test database on all three; afterwards every node is started
    again (before ``db`` drops the database), so one failure does not cascade."""
    nodes = Cluster(script)
    await nodes.start(*NODES)
    assert (await db.info())["cluster"]["n"] == 3
    try:
        yield nodes
    finally:
        await nodes.start(*NODES)


async def install(db, expect_accepted: bool) -> dict[str, str]:
    """The sample models' design documents; {id: rev}. ``expect_accepted``: whether
    CouchDB must answer 202 (fewer live copies than the write quorum) or 201."""
    revs = {}
    for name, doc in design_docs(MODELS).items():
        written = await db.put_design(name, doc)
        assert written.accepted is expect_accepted, f"_design/{name}: accepted={written.accepted}"
        revs[written.id] = written.rev
    return revs


def rev_of(reply) -> str:
    return reply.etag.strip('"')


@contextlib.asynccontextmanager
async def sidecar_on(config, http, node_url: str):
    """A second sidecar, on one node's URL (same database and keys); yields its Api."""
    url, (user, password) = split_credentials(node_url)
    async with running_sidecar(replace(config, couchdb_url=url, couchdb_user=user, couchdb_password=password)) as base:
        async with http.get(f"{base}/openapi.json") as resp:
            yield Api(http, base, SpecChecker(await resp.json()))


async def create(api, type_name: str, bodies: list[dict], provisional: bool = False, concurrency: int = 10) -> list:
    """POST each body; every one must answer 201, on every copy (no Write-Quorum) or, with
    ``provisional`` (a node down), on the live ones (``Write-Quorum: not-met``)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(body):
        async with gate:
            reply = await api.request("POST", f"/v1/{type_name}", json=body)
        assert reply.status == 201 and reply.headers.get(QUORUM) == ("not-met" if provisional else None), (
            reply.status,
            dict(reply.headers),
        )
        return reply

    return list(await asyncio.gather(*(one(body) for body in bodies)))


async def ids(api, query: str) -> list[str]:
    reply = await api.request("GET", f"/v1/event?{query}")
    assert reply.status == 200, reply.body
    return [item["id"] for item in reply.body["items"]]


async def walk(api, query: dict) -> tuple[list[str], int]:
    """Every page of ``query``, following ``next``: (ids in order, pages)."""
    seen, cursor, pages = [], None, 0
    while True:
        reply = await api.request("GET", "/v1/event?" + urlencode({**query, **({"cursor": cursor} if cursor else {})}))
        assert reply.status == 200, reply.body
        seen += [item["id"] for item in reply.body["items"]]
        pages += 1
        cursor = reply.body["next"]
        if cursor is None:
            return seen, pages
        assert pages < 100


PAGED = 120  # events of owner "pager", one a minute from 2026-02-01T00:00Z


async def test_one_node_down_writes_are_provisional_and_queries_answer_as_usual(cluster, db, api):
    await cluster.stop(3)
    # Everything below is written while node 3 is down: the live copies (nodes 1 and 2)
    # hold each write, so any copy a view read uses has it; not every copy does, so each
    # answer says the write is provisional.
    await install(db, expect_accepted=False)

    note = await api.request("POST", "/v1/note", json={"title": "one down", "counter": 1})
    assert note.status == 201 and note.headers.get(QUORUM) == "not-met"
    where = f"/v1/note/{note.body['id']}"
    read = await api.request("GET", where)
    assert read.status == 200 and read.body == note.body and read.etag == note.etag
    put = await api.request("PUT", where, json={"title": "replaced", "counter": 2}, headers={"If-Match": note.etag})
    assert put.status == 200 and put.body["title"] == "replaced" and put.headers.get(QUORUM) == "not-met"
    patch = await api.request(
        "PATCH", where, data=b'{"counter": 3}', headers={"Content-Type": MERGE_PATCH, "If-Match": put.etag}
    )
    assert patch.status == 200 and patch.headers.get(QUORUM) == "not-met"
    assert (patch.body["title"], patch.body["counter"]) == ("replaced", 3)
    assert (await api.request("GET", where)).body == patch.body
    deleted = await api.request("DELETE", where, headers={"If-Match": patch.etag})
    assert deleted.status == 204 and deleted.headers.get(QUORUM) == "not-met"
    health = await api.request("GET", "/_health?quick=false")
    assert health.body["status"] == "degraded", health.body
    assert (await api.request("GET", where)).status == 404

    made = await create(
        api,
        "event",
        [{"owner": o, "kind": k, "created_at": t, "payload": {"n": n}} for n, (o, k, t) in enumerate(EVENTS)],
        provisional=True,
    )
    by_n = [reply.body["id"] for reply in made]
    paged = await create(
        api,
        "event",
        [
            {"owner": "pager", "kind": "created", "created_at": f"2026-02-01T{i // 60:02}:{i % 60:02}:00Z"}
            for i in range(PAGED)
        ],
        provisional=True,
    )
    in_time_order = [reply.body["id"] for reply in paged]  # created_at ascends with i

    assert set(await ids(api, "owner=ann")) == {by_n[0], by_n[1], by_n[2]}
    assert set(await ids(api, "kind=login")) == {by_n[0], by_n[2], by_n[3]}
    assert await ids(api, "created_at[lt]=2026-01-02T10:00:00Z") == [by_n[0], by_n[3]]
    assert await ids(api, "created_at[gte]=2026-01-03T10:00:00Z&limit=4") == [
        by_n[2],
        by_n[4],
        by_n[5],
        in_time_order[0],
    ]
    assert await ids(api, "owner=ann&created_at[gt]=2026-01-01T10:00:00Z") == [by_n[1], by_n[2]]
    assert await ids(api, "owner=ann&sort=-created_at") == [by_n[2], by_n[1], by_n[0]]
    seen, pages = await walk(api, {"owner": "pager", "sort": "created_at", "limit": 7})
    assert seen == in_time_order and pages == -(-PAGED // 7)
    seen, pages = await walk(api, {"owner": "pager", "sort": "-created_at", "limit": 11})
    assert seen == in_time_order[::-1] and pages == -(-PAGED // 11)
    seen, _ = await walk(api, {"created_at[gte]": "2026-02-01T01:00:00Z", "limit": 9})
    assert seen == in_time_order[60:]


async def test_two_nodes_down_writes_are_reported_below_quorum(cluster, db, api):
    await cluster.stop(2, 3)
    await install(db, expect_accepted=True)  # on node 1 only: what readiness reads is there

    created = await api.request("POST", "/v1/note", json={"title": "two down", "counter": 1})
    assert created.status == 201, created.body
    assert created.headers.get(QUORUM) == "not-met"
    where = f"/v1/note/{created.body['id']}"
    updated = await api.request(
        "PUT", where, json={"title": "two down", "counter": 2}, headers={"If-Match": created.etag}
    )
    assert updated.status == 200, updated.body
    assert updated.headers.get(QUORUM) == "not-met"
    health = await api.request("GET", "/_health?quick=false")
    assert health.status == 200 and health.body["status"] == "degraded", health.body
    read = await api.request("GET", where)
    assert read.status == 200 and read.body == updated.body and read.etag == updated.etag


async def test_every_acknowledged_write_is_on_every_node_after_the_outage(cluster, db, api, config, couch, http):
    expected = await install(db, expect_accepted=False)  # {id: rev} each copy must hold
    last: dict[str, object] = {}  # note id -> its last acknowledged reply (None: deleted)

    async def write(method: str, docid: str | None = None, body: dict | None = None, etag: str | None = None):
        where = "/v1/note" if docid is None else f"/v1/note/{docid}"
        reply = await api.request(method, where, json=body, headers={"If-Match": etag} if etag else None)
        assert reply.status in (200, 201, 204), (method, reply.status, reply.body)
        docid = docid or reply.body["id"]
        last[docid] = None if method == "DELETE" else reply
        return docid

    async def phase(name: str, edit: list[str]) -> list[str]:
        """Create three notes; replace each note of ``edit`` (If-Match: its last ETag)."""
        made = [await write("POST", body={"title": f"{name} {i}", "counter": 0}) for i in range(3)]
        for docid in edit:
            await write(
                "PUT", docid, {"title": f"{name} edit", "counter": last[docid].body["counter"] + 1}, last[docid].etag
            )
        return made

    all_up = await phase("all up", [])
    await cluster.stop(3)
    one_down = await phase("one down", all_up[:2])
    await cluster.stop(2)
    await phase("two down", [all_up[0], one_down[0]])
    await write("DELETE", all_up[2], etag=last[all_up[2]].etag)  # the other copies still hold it
    await cluster.start(2, 3)

    expected.update({docid: None if reply is None else rev_of(reply) for docid, reply in last.items()})
    # Precondition for reading through every node: each shard copy holds the acknowledged
    # revision. Until internal replication has copied the outage's writes, a quorum read
    # (r=2) through node 2 or 3 can be answered by the two copies that missed them,
    # agreeing on the old state: reading earlier would measure replication speed, not the
    # service. Internal replication is started explicitly and awaited, with a deadline.
    await settle(couch, db.name, expected)

    membership = await couch.json("GET", "/_membership")
    assert set(membership["all_nodes"]) == set(membership["cluster_nodes"]) and len(membership["cluster_nodes"]) == 3
    for node in NODES:
        # A sidecar per node: readiness through one that saw no write below quorum
        # reflects the membership only.
        async with sidecar_on(config, http, cluster.url(node)) as through:
            for docid, reply in last.items():
                got = await through.request("GET", f"/v1/note/{docid}")
                if reply is None:
                    assert got.status == 404, (node, docid, got.status)
                else:
                    assert (got.status, got.body, got.etag) == (200, reply.body, reply.etag), (node, docid)
            health = await through.request("GET", "/_health?quick=false")
            assert health.status == 200 and health.body["status"] == "ok", (node, health.body)


async def settle(couch: CouchDB, db_name: str, expected: dict[str, str | None], within: float = 60.0) -> None:
    """Start internal replication of every shard (``_sync_shards``) and wait until each
    copy of each document holds ``expected[id]`` (a revision; None: deleted)."""
    await couch.request("POST", path(db_name, "_sync_shards"), json={})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while behind := await copies_behind(couch, db_name, expected):
        if loop.time() > deadline:
            raise AssertionError(
                f"after {within:.0f} s internal replication left {len(behind)} copies "
                f"behind their acknowledged revision: {behind[:10]}"
            )
        await asyncio.sleep(0.5)


async def copies_behind(couch: CouchDB, db_name: str, expected: dict[str, str | None]) -> list[str]:
    """``id@node`` of each shard copy whose own state of a document (read on that node
    through ``/_node/{node}/{shard}/{id}``, no quorum) differs from ``expected``."""
    shards: dict[str, dict[str, str]] = {}  # node -> range -> shard database name
    behind = []
    for docid, rev in expected.items():
        placement = await couch.json("GET", path(db_name, "_shards", docid))
        for node in placement["nodes"]:
            if node not in shards:
                local = await couch.json("GET", path("_node", node, "_all_dbs"))
                shards[node] = {
                    name.split("/")[1]: name
                    for name in local
                    if name.startswith("shards/") and name.split("/")[2].rsplit(".", 1)[0] == db_name
                }
            try:
                shard = shards[node][placement["range"]]  # ``_design/x`` keeps its slash here:
                have = (await couch.json("GET", path("_node", node, shard, *docid.split("/", 1))))["_rev"]
            except NotFound as exc:
                have = None if exc.reason == "deleted" else "missing"
            if have != rev:
                behind.append(f"{docid}@{node}")
    return behind
