"""The in-memory CouchDB's own behaviour: injected faults, what it does not emulate, shared
servers, repeatable ids, long polls. (How it answers like CouchDB is the
conformance contract's business: tests/contracts, run here by test_couchdb_contract_memory.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from data_service.couchdb import Conflict, ConnectFailed, Request, Timeout, Unavailable
from data_service.couchdb.memory import Fault, MemoryServer, matching, memory_couch
from data_service.retry import RetryPolicy


async def no_sleep(seconds: float) -> None:
    pass


@pytest.fixture
async def couch():
    async with memory_couch(record=True, sleep=no_sleep) as client:
        yield client


@pytest.fixture
async def db(couch):
    database = couch.database("db")
    await database.create()
    return database


async def test_a_lost_answer_was_applied_and_its_retry_conflicts(couch, db):
    fault = couch.transport.lose_answer(matching("PUT", "/db/doc"))
    with pytest.raises(Conflict):  # the client retried the PUT: it had landed
        await db.put({"_id": "doc", "v": 1})
    assert fault.hits == 1 and (await db.get("doc"))["v"] == 1
    assert [r.method for r in couch.transport.requests if r.path == "/db/doc"] == ["PUT", "PUT", "GET"]


async def test_a_refused_request_never_arrives(couch, db):
    couch.retry = RetryPolicy(attempts=1)
    couch.transport.refuse(matching("PUT"), times=None)
    with pytest.raises(ConnectFailed):
        await db.put({"_id": "doc"})
    assert await db.revision("doc") is None


async def test_a_failing_status_is_retried_when_idempotent_only(couch, db):
    puts = couch.transport.fail(matching("PUT"), status=503, times=2)
    assert (await db.put({"_id": "doc"})).rev.startswith("1-")  # the third attempt
    assert puts.hits == 2 and puts.spent
    bulk = couch.transport.fail(matching("POST", r"/db/_bulk_docs"))
    with pytest.raises(Unavailable):
        await db.bulk_docs([{"_id": "other"}])
    assert bulk.hits == 1 and await db.revision("other") is None


async def test_a_write_below_its_quorum_and_a_racer_before_it(couch, db):
    first = await db.put({"_id": "doc", "v": 1})
    couch.transport.below_quorum(matching("PUT", "/db/doc"))
    accepted = await db.put({"_id": "doc", "_rev": first.rev, "v": 2})
    assert accepted.accepted and (await db.get("doc"))["_rev"] == accepted.rev

    async def racer(request):  # another sidecar's write lands first, on the same server
        async with memory_couch(couch.transport.server) as other:
            await other.database("db").put({"_id": "doc", "_rev": accepted.rev, "v": "theirs"})

    racing = couch.transport.inject(Fault(matching("PUT", "/db/doc"), before=racer))
    with pytest.raises(Conflict):
        await db.put({"_id": "doc", "_rev": accepted.rev, "v": "mine"})
    assert racing.hits == 1 and (await db.get("doc"))["v"] == "theirs"


async def test_a_delayed_answer_arrives_after_later_requests(couch, db):
    couch.transport.delay(matching("PUT", "/db/slow"), 0.2)
    slow = asyncio.ensure_future(db.put({"_id": "slow"}))
    fast = await db.put({"_id": "fast"})
    assert not slow.done() and await db.revision("slow") is not None  # applied, not yet answered
    assert (await slow).rev.startswith("1-") and fast.rev.startswith("1-")


async def test_a_held_answer_goes_when_released_and_a_canned_one_instead_of_the_servers(couch, db):
    gate = asyncio.Event()
    couch.transport.inject(Fault(matching("GET", "/db/doc"), after=lambda _: gate.wait()))
    await db.put({"_id": "doc", "v": 1})
    held = asyncio.ensure_future(db.get("doc"))  # read now, answered when released
    rev = (await db.put({"_id": "doc", "_rev": (await db.revision("doc"))[0], "v": 2})).rev
    await asyncio.sleep(0.01)
    assert not held.done()
    gate.set()
    assert (await held)["v"] == 1 and rev.startswith("2-")
    canned = {"total_rows": 0, "offset": 0, "rows": []}
    couch.transport.inject(Fault(matching("GET", "/db/_design/d/_view/v"), applied=False, status=200, body=canned))
    assert (await db.view("d", "v")).rows == []


async def test_a_request_timeout_shorter_than_the_delay_loses_the_answer(couch, db):
    couch.transport.delay(matching("PUT"), 5.0)
    started = time.monotonic()
    with pytest.raises(Timeout):
        await couch.transport.handle(Request("PUT", "/db/doc", body=b'{"v": 1}', timeout=0.05))
    assert time.monotonic() - started < 4.0 and (await db.get("doc"))["v"] == 1


async def test_faults_are_tried_in_order_and_checked():
    with pytest.raises(ValueError):
        Fault(matching(), applied=False)  # neither applied nor failed: no answer at all
    async with memory_couch(sleep=no_sleep) as couch:
        db = couch.database("db")
        await db.create()
        first = couch.transport.fail(matching("GET"), status=503, times=1)
        second = couch.transport.inject(Fault(matching("GET"), status=502, applied=False, times=None))
        with pytest.raises(Unavailable) as caught:
            await db.info()
        assert caught.value.status == 502 and (first.hits, second.hits) == (1, 2)


@pytest.mark.parametrize(
    "method, target, body",
    [
        ("GET", "/db/_design/d/_view/v", None),
        ("GET", "/db/_design/d/_info", None),
        ("POST", "/db/_find", b'{"selector": {}}'),
        ("GET", "/db/doc/attachment.txt", None),
        ("PUT", "/db/doc", b'{"_attachments": {"a.txt": {"data": "eA==", "content_type": "text/plain"}}}'),
        ("GET", "/db/_changes?feed=continuous", None),
        ("GET", "/db/_changes?filter=d/f", None),
        ("POST", "/_replicate", b"{}"),
    ],
)
async def test_what_is_not_emulated_is_a_clear_501(couch, db, method, target, body):
    path, _, query = target.partition("?")
    params = tuple(tuple(pair.split("=")) for pair in query.split("&")) if query else ()
    response = await couch.transport.handle(Request(method, path, params, body))
    assert response.status == 501 and response.json()["error"] == "not_implemented"
    assert "use a server" in response.json()["reason"]


async def test_a_501_is_not_retried(couch, db):
    with pytest.raises(Unavailable) as caught:
        await db.view("d", "v")
    assert caught.value.error == "not_implemented"
    assert sum(1 for r in couch.transport.requests if "_view" in r.path) == 1


async def test_one_server_behind_several_clients():
    server = MemoryServer()
    async with memory_couch(server, sleep=no_sleep) as one, memory_couch(server, sleep=no_sleep) as two:
        await one.database("db").create()
        written = await one.database("db").put({"_id": "doc"})
        assert (await two.database("db").get("doc"))["_rev"] == written.rev
        two.transport.refuse(matching(), times=None)
        two.retry = RetryPolicy(attempts=1)
        with pytest.raises(ConnectFailed):
            await two.database("db").info()
        assert (await one.database("db").info())["doc_count"] == 1  # faults belong to one transport


async def test_ids_repeat_with_the_seed_and_follow_the_configured_algorithm():
    async with memory_couch(MemoryServer(seed=7)) as one, memory_couch(MemoryServer(seed=7)) as two:
        ids = await one.uuids(50)
        assert ids == await two.uuids(50) and ids == sorted(ids) and len({i[:26] for i in ids}) == 1
        assert await one.config_put("uuids", "algorithm", "random") == ""
        assert await one.config_get("uuids", "algorithm") == "random"
        random_ids = await one.uuids(50)
        assert len({i[:26] for i in random_ids}) == 50 and all(len(i) == 32 for i in random_ids)


async def test_revisions_depend_on_the_parent_the_body_and_the_deletion(db):
    one = await db.put({"_id": "a", "v": 1})
    assert (await db.put({"_id": "b", "v": 1})).rev == one.rev
    assert (await db.put({"_id": "c", "v": 2})).rev != one.rev
    assert (await db.put({"_id": "d", "v": 1, "_deleted": True})).rev != one.rev
    async with memory_couch() as other:  # another server: the same revisions
        await other.database("db").create()
        assert (await other.database("db").put({"_id": "x", "v": 1})).rev == one.rev


async def test_a_longpoll_waits_for_a_change_it_is_asked_about(db):
    since = (await db.changes())["last_seq"]
    params = {"feed": "longpoll", "since": since, "filter": "_doc_ids", "doc_ids": '["wanted"]', "timeout": 10000}
    waiting = asyncio.ensure_future(db.couch.json("GET", "/db/_changes", params=params))
    await db.put({"_id": "other"})
    await asyncio.sleep(0.05)
    assert not waiting.done()  # a change the filter drops wakes nobody
    await db.put({"_id": "wanted"})
    assert [r["id"] for r in (await asyncio.wait_for(waiting, 5))["results"]] == ["wanted"]


async def test_a_longpoll_from_now_sees_only_later_changes(db):
    await db.put({"_id": "before"})
    waiting = asyncio.ensure_future(db.changes(feed="longpoll", since="now", timeout=10))
    await asyncio.sleep(0.02)
    await db.put({"_id": "after"})
    assert [r["id"] for r in (await asyncio.wait_for(waiting, 5))["results"]] == ["after"]


async def test_a_longpoll_on_a_deleted_database_answers_at_once(db):
    waiting = asyncio.ensure_future(db.changes(feed="longpoll", since="now", timeout=30))
    await asyncio.sleep(0.02)
    await db.drop()
    assert (await asyncio.wait_for(waiting, 5))["results"] == []


async def test_many_operations_stay_consistent(db):
    """A stateful test's load: thousands of writes, with the feed and counts agreeing."""
    revs = {}
    for round_ in range(4):
        docs = [{"_id": f"d{i:04}", "n": round_, **({"_rev": revs[f"d{i:04}"]} if round_ else {})} for i in range(500)]
        revs = {r["id"]: r["rev"] for r in await db.bulk_docs(docs)}
    assert all(rev.startswith("4-") for rev in revs.values())
    feed = await db.changes(limit=1000)
    assert len(feed["results"]) == 500 and feed["pending"] == 0
    rows = (await db.all_docs(keys=[f"d{i:04}" for i in range(0, 500, 7)], include_docs=True)).rows
    assert all(row["doc"]["n"] == 3 for row in rows) and (await db.info())["doc_count"] == 500
