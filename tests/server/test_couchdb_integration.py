"""The CouchDB client against a real CouchDB-API server (dev server or $COUCHDB_URL)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
from support import bulk_on_every_copy, put_on_every_copy, unique_name, until

from data_service.couchdb import (
    Attempt,
    Conflict,
    CouchDB,
    Hooks,
    IdPool,
    Limits,
    NotFound,
    PreconditionFailed,
    Request,
    Unauthorized,
    Unsupported,
)
from data_service.couchdb.client import split_credentials


async def test_server_info_tells_the_kind(couch):
    info = await couch.server_info()
    assert info.kind in ("couchdb", "pouchdb-server")
    assert info.version


async def test_database_lifecycle(couch):
    db = couch.database(unique_name())
    assert not await db.exists()
    with pytest.raises(NotFound):
        await db.info()
    assert await db.create() is True
    try:
        with pytest.raises(PreconditionFailed):
            await db.create()
        assert await db.create(exist_ok=True) is False
        info = await db.info()
        assert info["db_name"] == db.name and info["doc_count"] == 0
    finally:
        await db.drop()
    assert not await db.exists()
    await db.drop(missing_ok=True)


async def test_document_crud_with_revs(db):
    docid = "odd id/with?chars&+%"
    # Both writes go to every copy: on a cluster a stale write that reaches a copy still
    # without the current revision is accepted there (202, a conflict) instead of a 409.
    created = await put_on_every_copy(db, {"_id": docid, "n": 1})
    assert created["id"] == docid and created["rev"].startswith("1-")
    doc = await db.get(docid)
    assert doc["_rev"] == created["rev"] and doc["n"] == 1

    updated = await put_on_every_copy(db, {**doc, "n": 2})
    assert updated["rev"].startswith("2-")
    assert (await db.get(docid, rev=created["rev"]))["n"] == 1  # old rev still readable

    with pytest.raises(Conflict) as stale:
        await db.put({**doc, "n": 3})  # doc still carries rev 1
    assert stale.value.status == 409 and stale.value.error == "conflict"
    with pytest.raises(Conflict):
        await db.put({"_id": docid, "n": 3})  # no rev at all on an existing doc
    with pytest.raises(Conflict):
        await db.delete(docid, created["rev"])

    deleted = await db.delete(docid, updated["rev"])
    assert deleted.rev.startswith("3-")
    with pytest.raises(NotFound) as gone:
        await db.get(docid)
    assert isinstance(gone.value, KeyError)


async def test_real_conflicts_via_new_edits_false(db):
    await db.bulk_docs(
        [
            {"_id": "c1", "_rev": "1-aaaa", "v": 0},
            {"_id": "c1", "_rev": "2-bbbb", "_revisions": {"start": 2, "ids": ["bbbb", "aaaa"]}, "v": "left"},
            {"_id": "c1", "_rev": "2-cccc", "_revisions": {"start": 2, "ids": ["cccc", "aaaa"]}, "v": "right"},
        ],
        new_edits=False,
    )
    doc = await db.get("c1", conflicts=True)
    assert doc["_rev"] == "2-cccc" and doc["_conflicts"] == ["2-bbbb"]  # highest rev id wins
    leaves = await db.open_revs("c1")
    assert sorted(leaf["ok"]["v"] for leaf in leaves) == ["left", "right"]
    (one,) = await db.open_revs("c1", ["2-bbbb"])
    assert one["ok"]["v"] == "left"

    results = await db.bulk_docs(
        [
            {"_id": "c1", "_rev": "2-cccc", "v": "merged"},
            {"_id": "c1", "_rev": "2-bbbb", "_deleted": True},
        ]
    )
    assert all(r.get("ok") for r in results)
    resolved = await db.get("c1", conflicts=True)
    assert resolved["v"] == "merged" and "_conflicts" not in resolved


async def test_bulk_get(db):
    first = await db.put({"_id": "a", "n": 1})
    await db.put({"_id": "b", "n": 2})
    results = await db.bulk_get([{"id": "a", "rev": first.rev}, {"id": "b"}, {"id": "missing"}])
    by_id = {r["id"]: r["docs"][0] for r in results}
    assert by_id["a"]["ok"]["n"] == 1 and by_id["b"]["ok"]["n"] == 2
    assert "ok" not in by_id["missing"]  # CouchDB: {"error": ...}; pouchdb-server: {}


VIEW = {"views": {"by_group": {"map": "function (doc) { if (doc.group) { emit(doc.group, null); } }"}}}


async def test_view_paging_with_startkey_docid(db):
    await db.put_design("by_group", VIEW)
    await bulk_on_every_copy(db, [{"_id": f"doc{i:02}", "group": "g1" if i < 11 else "g2"} for i in range(15)])

    seen, start = [], None
    for _ in range(10):  # keyset paging: fetch one extra row, the next page starts at it
        options = {"startkey": "g1", "endkey": "g1", "limit": 4, "include_docs": True}
        if start:
            options["startkey_docid"] = start
        page = await db.view("by_group", "by_group", **options)
        seen += [row["doc"]["_id"] for row in page.rows[:3]]
        if len(page.rows) < 4:
            break
        start = page.rows[3]["id"]
    assert seen == [f"doc{i:02}" for i in range(11)]

    result = await db.view("by_group", "by_group", keys=["g2"])
    assert [row["id"] for row in result.rows] == ["doc11", "doc12", "doc13", "doc14"]
    result = await db.view(
        "by_group", "by_group", startkey="g2", endkey="g1", descending=True, inclusive_end=False, limit=2
    )
    assert [row["key"] for row in result.rows] == ["g2", "g2"] and result.total_rows == 15


async def test_uuid_pool_under_concurrent_demand(couch):
    pool = IdPool(couch, batch=100, low_water=20)
    ids = await asyncio.gather(*(pool.take() for _ in range(1000)))
    assert len(ids) == len(set(ids)) == 1000
    assert all(isinstance(i, str) and len(i) >= 32 for i in ids)


async def test_security_round_trip(db):
    security = {
        "admins": {"names": [], "roles": ["_admin"]},
        "members": {"names": [], "roles": ["_admin", "data-service"]},
    }
    await db.put_security(security)

    async def read_back() -> bool:  # on a cluster each shard copy takes the write in its own time
        return (await db.security())["members"]["roles"] == ["_admin", "data-service"]

    await until(read_back, "the _security written is read back")


async def test_node_config_or_detected_absence(couch):
    info = await couch.server_info()
    if info.supports_node_config:
        assert isinstance(await couch.config_get("uuids"), dict)
    else:
        with pytest.raises(Unsupported):
            await couch.config_get("uuids")


async def test_changes_normal_and_longpoll(db):
    await db.put({"_id": "x"})
    normal = await db.changes()
    assert [r["id"] for r in normal["results"]] == ["x"]
    since = normal["last_seq"]
    started = time.monotonic()
    quiet = await db.changes(feed="longpoll", since=since, timeout=0.5)
    assert quiet["results"] == [] and time.monotonic() - started < 10

    waiter = asyncio.ensure_future(db.changes(feed="longpoll", since=since, timeout=10))
    await asyncio.sleep(0.2)
    await db.put({"_id": "y"})
    woke = await asyncio.wait_for(waiter, 15)
    assert [r["id"] for r in woke["results"]] == ["y"]


class LongPollSeen(Hooks):
    """Sets ``begun`` when a long poll's attempt starts (its connection is taken right after)."""

    def __init__(self) -> None:
        self.begun = asyncio.Event()

    @contextlib.contextmanager
    def attempt(self, request: Request) -> Iterator[Attempt]:
        if request.long_poll:
            self.begun.set()
        yield Attempt(request)


async def test_long_polls_have_a_pool_of_their_own(couchdb_url, db):
    """With one connection per pool, a long poll waiting 30 s for a change does not hold up a
    plain request: it never queues behind long polls (issue 22 row 9)."""
    hooks = LongPollSeen()
    async with CouchDB(couchdb_url, limits=Limits(max_connections=1, max_long_polls=1), hooks=hooks) as couch:
        database = couch.database(db.name)
        since = (await database.changes())["last_seq"]
        waiting = asyncio.ensure_future(database.changes(feed="longpoll", since=since, timeout=30))
        await asyncio.wait_for(hooks.begun.wait(), 10)
        assert (await asyncio.wait_for(database.info(), 10))["db_name"] == db.name
        assert not waiting.done()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting


async def test_wrong_password_raises_unauthorized(couchdb_url, db):
    """As a user of its own: CouchDB 3.5 locks an account out for 5 minutes after 5 failed
    logins, and a few runs of this test as the admin would lock the admin out."""
    url, _ = split_credentials(couchdb_url)
    async with CouchDB(url, auth=(unique_name("nobody"), "wrong-password")) as intruder:
        with pytest.raises(Unauthorized) as caught:
            await intruder.database(db.name).info()
    assert caught.value.status == 401 and "wrong-password" not in str(caught.value)
