"""Replication conflicts where a view or a second node is needed: racing sweeps converge, query
pages over conflicted rows, two replicating nodes converge on the declared policy, and
``data-service reconcile`` over 500 conflicted documents. The merge rules are
tests/unit/test_conflicts.py's; what the reconciler decides for one document is the store
contract's (tests/contracts/store_reconciler.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import devcouch_pair
import orjson
import pytest
from support import install_design_docs, run_command, running_app, unique_name
from support.conflicts import CART, MODELS, MODELS_PATH, PROFILE, at, edit, fork, make

from data_service import envelope, query
from data_service.config import Config
from data_service.couchdb import CouchDB, IdPool, NotFound
from data_service.couchdb.client import split_credentials
from data_service.design import CONFLICTS_NAME, VIEW
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.protection import Keyring
from data_service.store import DocumentStore, Stats
from data_service.store.reconciler import Reconciler, Status
from data_service.store.sweeper import run_sweeper, sweep

# merge semantics, not replica lag: a view or a read right after a write on a replicated
# cluster database may miss it
pytestmark = pytest.mark.one_copy


async def install_views(db) -> None:
    """The views of the test models; not the guard (see ``install_design_docs``)."""
    await install_design_docs(db, MODELS_PATH, guard=False)


@pytest.fixture
def ring(keys_dir, db) -> Keyring:
    """For documents of the test database: signed for it, as its sidecar signs them."""
    return Keyring(KeysDir(keys_dir), db.name)


async def create_stored(store, model, body: dict) -> dict:
    """Create through the store; the stored document as CouchDB holds it."""
    return await store.read(model, (await store.create(model, body)).id)


def edit_now(ring, model, current, changes, writer) -> dict:
    return edit(ring, model, current, changes, envelope.now(), writer, current["_rev"])


@pytest.fixture
async def store(db, couch, ring):
    await install_views(db)
    return DocumentStore(db, IdPool(couch), ring, writer="w-store")


async def test_racing_sweeps_converge(store, db, ring):
    docs = []
    for i in range(6):
        doc = await create_stored(store, CART, {"owner": f"o{i}", "visits": 0, "items": []})
        await fork(
            db,
            doc,
            edit_now(ring, CART, doc, {"visits": 1, "items": ["a"]}, "wa"),
            edit_now(ring, CART, doc, {"visits": 2, "items": ["b"]}, "wb"),
            edit_now(ring, CART, doc, {"visits": 3, "title": "c"}, "wc"),
        )
        docs.append(doc)
    racers = [Reconciler(db, Lifecycle(ring, "w-r"), Stats()) for _ in range(3)]
    reports = await asyncio.gather(*(sweep(r, MODELS, page=2) for r in racers))
    assert all(not report.having(Status.UNRESOLVABLE) for report in reports)
    for doc in docs:
        final = await db.get(doc["_id"], conflicts=True)
        assert "_conflicts" not in final
        assert final["visits"] == 6 and sorted(final["items"]) == ["a", "b"] and final["title"] == "c"
        ring.check_signature(final)


async def test_queries_reconcile_conflicted_rows(store, db, ring):
    docs = [await create_stored(store, CART, {"owner": "q", "title": f"t{i}", "visits": i}) for i in range(3)]
    target = docs[1]
    await fork(
        db,
        target,
        edit_now(ring, CART, target, {"title": "A"}, "wa"),
        edit_now(ring, CART, target, {"visits": 11}, "wb"),
    )
    page = await store.query(CART, query.parse(CART, {"owner": ["q"]}))
    shown = {item["id"]: item for item in page.items}
    assert set(shown) == {d["_id"] for d in docs}
    assert shown[target["_id"]]["title"] == "A" and shown[target["_id"]]["visits"] == 11
    assert "_conflicts" not in await db.get(target["_id"], conflicts=True)


@contextlib.asynccontextmanager
async def node(config: Config, interval: float):
    """A sidecar (the real app) with its background sweeper; yields (base URL, ctx)."""
    async with running_app(config) as (base, ctx):
        sweeper = asyncio.create_task(run_sweeper(ctx.store.reconciler, ctx.models, interval))
        try:
            yield base, ctx
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)


async def call(http, method: str, url: str, body=None, headers=None) -> tuple[int, dict, str | None]:
    headers = {"Content-Type": "application/json", **(headers or {})}
    data = None if body is None else orjson.dumps(body)
    async with http.request(method, url, data=data, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers.get("ETag")


async def change(http, base: str, type_name: str, docid: str, update) -> None:
    """A careful client: read, apply ``update`` to what it read, write with If-Match; again on 412."""
    url = f"{base}/v1/{type_name}/{docid}"
    for _ in range(100):
        status, doc, etag = await call(http, "GET", url)
        assert status == 200, doc
        patch = update(doc)
        status, reply, _ = await call(
            http, "PATCH", url, patch, {"If-Match": etag, "Content-Type": "application/merge-patch+json"}
        )
        if status == 200:
            return
        assert status == 412, (status, reply, patch)
    raise AssertionError(f"{docid}: never got a write in")


async def converged(a, b, ids: list[str], seconds: float = 40.0) -> dict[str, dict]:
    """Wait (bounded) until every document has no conflicts and one winner on both sides."""
    deadline = time.monotonic() + seconds
    while True:
        state, pending = {}, []
        for docid in ids:
            try:
                left, right = await a.get(docid, conflicts=True), await b.get(docid, conflicts=True)
            except NotFound:  # not replicated yet
                pending.append(docid)
                continue
            state[docid] = (left, right)
            if "_conflicts" in left or "_conflicts" in right or left["_rev"] != right["_rev"]:
                pending.append(docid)
        if not pending:
            return {docid: left for docid, (left, _) in state.items()}
        if time.monotonic() > deadline:
            raise AssertionError(f"not converged after {seconds} s: {pending}")
        await asyncio.sleep(0.2)


@pytest.fixture(params=["two databases", "two dev servers"])
async def nodes(request, couchdb_url, keys_dir, tmp_path):
    """Two replicating "nodes": two databases of the server under test (works against any
    server, $COUCHDB_URL included), or two pouchdb-servers started by scripts/devcouch_pair.py.
    Replicas share one deployment id: signatures name it, not their database names."""
    if request.param == "two databases":
        names = [unique_name("node_a"), unique_name("node_b")]
        servers = [couchdb_url, couchdb_url]
        pair = devcouch_pair.Replication(
            devcouch_pair.Endpoint(couchdb_url, names[0]),
            devcouch_pair.Endpoint(couchdb_url, names[1]),
            name=unique_name("pair"),
        )
    else:
        name = unique_name("node")
        first, second, pair = await asyncio.to_thread(devcouch_pair.start_pair, tmp_path / "pair", name, True)
        await asyncio.to_thread(pair.pause)  # started again below, once the views are in
        names, servers = [name, name], [first.admin_url, second.admin_url]
    clients = [CouchDB(server) for server in servers]
    dbs = [client.database(name) for client, name in zip(clients, names, strict=True)]
    configs = []
    for db, server in zip(dbs, servers, strict=True):
        await db.create(exist_ok=True)
        await install_views(db)
        url, (user, password) = split_credentials(server)
        configs.append(
            Config(
                couchdb_url=url,
                database=db.name,
                couchdb_user=user,
                couchdb_password=password,
                connect_timeout=2,
                request_timeout=10,
                models_path=str(MODELS_PATH),
                keys_dir=keys_dir,
                deployment_id=f"replicas-{names[0]}",
            )
        )
    try:
        yield dbs, pair, configs
    finally:
        await asyncio.to_thread(pair.pause)
        for db, client in zip(dbs, clients, strict=True):
            await db.drop(missing_ok=True)
            await client.aclose()
        if request.param == "two dev servers":
            for side in ("a", "b"):
                devcouch_pair.devcouch.stop(tmp_path / "pair" / side)


async def test_two_replicating_nodes_converge_on_the_declared_policy(nodes, http):
    dbs, pair, configs = nodes
    await asyncio.to_thread(pair.start)
    async with node(configs[0], 0.3) as (base_a, ctx_a), node(configs[1], 0.3) as (base_b, ctx_b):

        async def create(type_name, data):
            status, doc, _ = await call(http, "POST", f"{base_a}/v1/{type_name}", data)
            assert status == 201, doc
            return doc["id"]

        cart = await create("cart", {"owner": "o1", "title": "t", "items": ["x"], "visits": 1, "score": 0.5})
        busy = await create("cart", {"owner": "o2", "items": [], "visits": 0})
        profile = await create("profile", {"name": "Ann", "city": "Oslo"})
        ids = [cart, busy, profile]
        await converged(*dbs, ids)

        # -- replication paused: both sides edit the same documents
        await asyncio.to_thread(pair.pause)
        await change(
            http,
            base_a,
            "cart",
            cart,
            lambda d: {"title": "from A", "items": d["items"] + ["a"], "visits": d["visits"] + 1},
        )
        await change(
            http,
            base_b,
            "cart",
            cart,
            lambda d: {
                "note": "from B",
                "items": ["b"] + d["items"],
                "visits": d["visits"] + 2,
                "score": d["score"] + 1,
            },
        )
        await change(http, base_a, "profile", profile, lambda d: {"city": "Bergen"})
        await asyncio.sleep(0.01)
        await change(http, base_b, "profile", profile, lambda d: {"name": "Anna"})  # the later edit
        await asyncio.to_thread(pair.resume)

        # -- replication running: both sides keep incrementing and adding, concurrently
        async def worker(base, side):
            for i in range(8):
                await change(
                    http,
                    base,
                    "cart",
                    busy,
                    lambda d, i=i: {
                        "visits": d["visits"] + 1,
                        "items": [*d["items"], f"{side}{i}"],
                        "title": f"{side}{i}",
                    },
                )

        await asyncio.gather(worker(base_a, "a"), worker(base_b, "b"))

        final = await converged(*dbs, ids)
        for docid in ids:  # both sidecars answer the same
            type_name = "profile" if docid == profile else "cart"
            replies = [await call(http, "GET", f"{base}/v1/{type_name}/{docid}") for base in (base_a, base_b)]
            assert replies[0] == replies[1] and replies[0][0] == 200

        shown = (await call(http, "GET", f"{base_a}/v1/cart/{cart}"))[1]
        assert shown["title"] == "from A" and shown["note"] == "from B"
        assert shown["items"] == ["b", "x", "a"] and shown["visits"] == 4 and shown["score"] == 1.5
        shown = (await call(http, "GET", f"{base_b}/v1/profile/{profile}"))[1]
        assert shown["name"] == "Anna" and shown["city"] == "Oslo"  # latest: B's whole document
        shown = (await call(http, "GET", f"{base_b}/v1/cart/{busy}"))[1]
        assert shown["visits"] == 16  # no increment lost
        assert sorted(shown["items"]) == sorted([f"a{i}" for i in range(8)] + [f"b{i}" for i in range(8)])
        assert shown["title"] in ("a7", "b7")
        for doc in final.values():
            ctx_a.store.lifecycle.check_signature(doc)
        found = ctx_a.store.stats.conflicts_found + ctx_b.store.stats.conflicts_found
        resolved = ctx_a.store.stats.conflicts_resolved + ctx_b.store.stats.conflicts_resolved
        assert found >= 2 and resolved >= 2  # the paused edits conflicted at least
        assert ctx_a.store.stats.conflicts_unresolvable == ctx_b.store.stats.conflicts_unresolvable == 0


async def test_two_nodes_keep_a_set_removal_and_an_item_added_again(nodes, http):
    """A revokes a role while B edits another property: revoked on both. Then A revokes
    a role while B revokes and grants it again: granted on both (the grant is newer). Then
    A grants and revokes a new role while B grants it: granted on both."""
    dbs, pair, configs = nodes
    await asyncio.to_thread(pair.start)
    async with node(configs[0], 0.3) as (base_a, ctx_a), node(configs[1], 0.3) as (base_b, ctx_b):
        status, doc, _ = await call(
            http, "POST", f"{base_a}/v1/cart", {"owner": "o1", "title": "t", "items": ["admin", "editor", "viewer"]}
        )
        assert status == 201, doc
        cart = doc["id"]
        await converged(*dbs, [cart])

        await asyncio.to_thread(pair.pause)
        await change(http, base_a, "cart", cart, lambda d: {"items": [i for i in d["items"] if i != "admin"]})
        await change(http, base_b, "cart", cart, lambda d: {"title": "from B"})
        await asyncio.to_thread(pair.resume)
        await converged(*dbs, [cart])
        for base in (base_a, base_b):
            shown = (await call(http, "GET", f"{base}/v1/cart/{cart}"))[1]
            assert shown["items"] == ["editor", "viewer"] and shown["title"] == "from B"

        await asyncio.to_thread(pair.pause)
        await change(http, base_a, "cart", cart, lambda d: {"items": ["viewer"]})
        await change(http, base_b, "cart", cart, lambda d: {"items": ["viewer"]})
        await change(http, base_b, "cart", cart, lambda d: {"items": ["viewer", "editor"]})
        await asyncio.to_thread(pair.resume)
        await converged(*dbs, [cart])
        replies = [await call(http, "GET", f"{base}/v1/cart/{cart}") for base in (base_a, base_b)]
        assert replies[0] == replies[1] and replies[0][1]["items"] == ["viewer", "editor"]

        await asyncio.to_thread(pair.pause)
        await change(http, base_a, "cart", cart, lambda d: {"items": [*d["items"], "guest"]})
        await change(http, base_a, "cart", cart, lambda d: {"items": [i for i in d["items"] if i != "guest"]})
        await change(http, base_b, "cart", cart, lambda d: {"items": [*d["items"], "guest"]})
        await asyncio.to_thread(pair.resume)
        final = await converged(*dbs, [cart])
        replies = [await call(http, "GET", f"{base}/v1/cart/{cart}") for base in (base_a, base_b)]
        assert replies[0] == replies[1] and replies[0][1]["items"] == ["viewer", "editor", "guest"]
        ctx_a.store.lifecycle.check_signature(final[cart])
        assert ctx_a.store.stats.conflicts_unresolvable == ctx_b.store.stats.conflicts_unresolvable == 0


async def test_reconcile_command_resolves_500_conflicted_documents(db, config, ring):
    await install_views(db)
    docs = []
    for i in range(500):
        rev = f"1-{uuid.uuid4().hex}"
        if i % 2:
            base = make(ring, CART, {"owner": f"o{i}", "items": ["x"], "visits": i}, at(0), rev=rev)
            a = edit(ring, CART, base, {"items": ["x", "a"], "visits": i + 1}, at(1), "wa", rev)
            b = edit(ring, CART, base, {"items": ["x", "b"], "visits": i + 2, "title": "b"}, at(2), "wb", rev)
        else:
            base = make(ring, PROFILE, {"name": f"n{i}"}, at(0), rev=rev)
            a = edit(ring, PROFILE, base, {"city": "A"}, at(1), "wa", rev)
            b = edit(ring, PROFILE, base, {"city": "B"}, at(2), "wb", rev)
        docs.append((base, a, b))
    batch = []
    for base, a, b in docs:
        batch.append(base)
        generation, parent = base["_rev"].split("-")
        for leaf in (a, b):
            digest = uuid.uuid4().hex
            batch.append({**leaf, "_rev": f"2-{digest}", "_revisions": {"start": 2, "ids": [digest, parent]}})
    # Written to every copy (w = n): views read one copy per shard range, so only then does
    # the count below see every document on a cluster (a plain 201 means w of n copies).
    copies = await db.copies()
    for start in range(0, len(batch), 500):
        body = {"docs": batch[start : start + 500], "new_edits": False}
        assert await db.couch.json("POST", db._path("_bulk_docs"), params={"w": copies}, json=body) == []
    assert (await db.view(CONFLICTS_NAME, VIEW, limit=0)).total_rows == 500

    result = await asyncio.to_thread(run_command, config, "reconcile", f"--models={MODELS_PATH}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconcile: 500/500 documents (100%)" in result.stderr  # progress
    assert "reconcile: 500 conflicted, 500 resolved, 0 unresolvable, 0 busy, 0 rolled back, 0 tampered" in result.stdout
    ids = [base["_id"] for base, _, _ in docs]  # read by id (quorum reads), not through the view
    rows = (await db.all_docs(keys=ids, include_docs=True, conflicts=True)).rows
    assert len(rows) == 500 and not [row["id"] for row in rows if "_conflicts" in row["doc"]]
    for base, a, b in docs[:4]:
        final = await db.get(base["_id"], conflicts=True)
        assert "_conflicts" not in final
        if final["type"].startswith("cart"):
            assert final["visits"] == base["visits"] + 3 and sorted(final["items"]) == ["a", "b", "x"]
        else:
            assert final["city"] == "B"  # the later edit

    again = await asyncio.to_thread(run_command, config, "reconcile", f"--models={MODELS_PATH}")
    assert again.returncode == 0 and "reconcile: 0 conflicted" in again.stdout


async def test_reconcile_command_exits_1_on_unresolvable(db, config, ring):
    await install_views(db)
    base = make(ring, PROFILE, {"name": "n"}, envelope.now(), rev=f"1-{uuid.uuid4().hex}")
    await db.bulk_docs([base], new_edits=False)
    tampered = {**edit_now(ring, PROFILE, base, {"city": "x"}, "wa"), "name": "evil"}
    one = edit_now(ring, PROFILE, base, {"account": "1"}, "wa")
    two = edit_now(ring, PROFILE, base, {"account": "2"}, "wb")
    _, bad, _ = await fork(db, base, one, tampered, two)
    result = await asyncio.to_thread(run_command, config, "reconcile", f"--models={MODELS_PATH}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"UNRESOLVABLE {base['_id']}: immutable property 'account' differs" in result.stdout
    assert f"DISCARDED {base['_id']} {bad}: signature does not match the content" in result.stdout
    assert "1 conflicted, 0 resolved, 1 unresolvable" in result.stdout
