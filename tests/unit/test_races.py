"""Writes stored on fewer copies than asked (202), decided as docs/consistency.md §2 says,
on the in-memory CouchDB: a racing write from the same revision is placed by a fault just
before ours is stored, and ours is answered 202 — what a cluster does when both writes
reached some copies each. Also writes whose answer was lost and whose retry met them.

A 412 comes back only when the write was withdrawn from every copy; otherwise the write
stands, provisional (``Write-Quorum: not-met``, ``Answer.below_quorum``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import orjson
import pytest
from support import SAMPLE_MODELS

from data_service import idempotency
from data_service.cache import Cache
from data_service.couchdb import IdPool
from data_service.couchdb.memory import Fault, MemoryServer, matching, memory_couch
from data_service.envelope import Removed
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import load_models
from data_service.protection import Keyring
from data_service.store import DocumentStore, StaleRevision
from data_service.store.reconciler import Status

MODELS = load_models(SAMPLE_MODELS)
NOTE = MODELS.get("note")
WRITES = matching("POST", r"/db/_bulk_docs")
FUTURE, PAST = "2100-01-01T00:00:00.000Z", "2000-01-01T00:00:00.000Z"


@pytest.fixture
def keys(tmp_path) -> Keyring:
    KeysDir(tmp_path).create()
    return Keyring(KeysDir(tmp_path), "db")


@pytest.fixture
async def server() -> MemoryServer:
    return MemoryServer()


@pytest.fixture
async def store(server, keys):
    async with memory_couch(server) as couch:
        await couch.database("db").create()

        async def no_sleep(_: float) -> None:
            return None

        yield DocumentStore(couch.database("db"), IdPool(couch), keys, sleep=no_sleep)


async def leaves(store: DocumentStore, docid: str) -> list[dict]:
    return [entry["ok"] for entry in await store.db.open_revs(docid)]


def race(store: DocumentStore, parent: dict, title: str, at: str) -> None:
    """Our next write is stored on some copies (202) and another sidecar's write from
    ``parent`` on the others: the rival appears as a sibling (replication style) by the
    time the writer looks at every copy's leaves."""
    rival = Lifecycle(store.lifecycle.keys, "other-sidecar").patch(NOTE, parent, {"title": title}, {}, at).doc
    digest = uuid.uuid4().hex
    generation, parent_hash = parent["_rev"].split("-")
    branch = {
        **rival,
        "_rev": f"{int(generation) + 1}-{digest}",
        "_revisions": {"start": int(generation) + 1, "ids": [digest, parent_hash]},
    }

    async def replicated(_request) -> None:
        assert await store.db.bulk_docs([branch], new_edits=False) == []

    transport = store.db.couch.transport
    transport.inject(Fault(WRITES, status=202))
    transport.inject(Fault(every_leaf(parent["_id"]), before=replicated))


def every_leaf(docid: str):
    """The writer's look at every copy's leaves (``open_revs``) after a 202."""
    return lambda request: request.path == f"/db/{docid}" and "open_revs" in dict(request.params)


async def created(store: DocumentStore, title: str = "first") -> dict:
    answer = await store.create(NOTE, {"title": title})
    return await store.read(NOTE, answer.id)


async def test_a_racing_write_that_the_policy_prefers_wins_and_ours_is_withdrawn_and_stale(store):
    parent = await created(store)
    race(store, parent, "theirs", FUTURE)
    with pytest.raises(StaleRevision) as stale:
        await store.replace(NOTE, parent["_id"], {"title": "mine"}, frozenset({parent["_rev"]}))
    assert stale.value.representation["title"] == "theirs"  # the later write: latest's choice
    live = [leaf for leaf in await leaves(store, parent["_id"]) if not leaf.get("_deleted")]
    assert [leaf["title"] for leaf in live] == ["theirs"]  # ours is nowhere live
    withdrawn = [leaf for leaf in await leaves(store, parent["_id"]) if leaf.get("_deleted")]
    assert [leaf["meta"]["removed"] for leaf in withdrawn] == [Removed.WITHDRAWN]
    assert store.stats.writes_below_quorum == 1 and store.stats.races_withdrawn == 1
    assert store.stats.last_copy_missing == 0  # a race is contention, not a lost copy


async def test_a_racing_write_the_policy_does_not_prefer_leaves_ours_standing_provisionally(store):
    parent = await created(store)
    race(store, parent, "theirs", PAST)  # stamped 1 ms after the parent (a write is always later)
    await asyncio.sleep(0.005)  # so ours is stamped later than that: no tie for the revision hash to break
    answer = await store.replace(NOTE, parent["_id"], {"title": "mine"}, frozenset({parent["_rev"]}))
    assert answer.below_quorum and orjson.loads(answer.body)["title"] == "mine"
    assert store.stats.races_withdrawn == 0  # the rival's writer withdraws its own: same rule, same leaves
    assert (await store.read(NOTE, parent["_id"]))["title"] == "mine"  # a read merges the conflict: ours


async def test_a_write_no_copy_raced_stands_and_says_a_copy_is_missing(store):
    parent = await created(store)
    store.db.couch.transport.below_quorum(WRITES)
    answer = await store.patch(NOTE, parent["_id"], {"title": "alone"}, None)
    assert answer.below_quorum and store.stats.last_copy_missing > 0 and store.stats.races_withdrawn == 0


async def test_a_delete_beside_a_live_racer_is_stale(store):
    parent = await created(store)
    race(store, parent, "theirs", PAST)
    with pytest.raises(StaleRevision) as stale:
        await store.delete(NOTE, parent["_id"], frozenset({parent["_rev"]}))
    assert stale.value.representation["title"] == "theirs"  # live beats a tombstone of the same generation


async def test_a_write_whose_answer_was_lost_is_found_by_its_signature_when_its_retry_conflicts(store):
    parent = await created(store)
    store.db.couch.transport.lose_answer(WRITES)  # stored; the client retries; the retry meets it (409)
    answer = await store.replace(NOTE, parent["_id"], {"title": "mine"}, frozenset({parent["_rev"]}))
    assert orjson.loads(answer.body)["title"] == "mine" and answer.below_quorum  # which copies has it: unknown
    assert answer.rev == (await store.read(NOTE, parent["_id"]))["_rev"]


async def test_a_delete_whose_answer_was_lost_is_the_delete_it_was(store):
    """Issue 21, diagnosis 4: a retried DELETE found its own tombstone and answered 502."""
    parent = await created(store)
    store.db.couch.transport.lose_answer(WRITES)
    answer = await store.delete(NOTE, parent["_id"], frozenset({parent["_rev"]}))
    assert answer.deleted and answer.below_quorum


async def test_a_withdrawal_that_does_not_reach_every_copy_leaves_the_write_standing(store):
    parent = await created(store)
    race(store, parent, "theirs", FUTURE)
    store.db.couch.transport.inject(Fault(WRITES, status=202, times=2))  # the withdrawal: below quorum too
    answer = await store.replace(NOTE, parent["_id"], {"title": "mine"}, frozenset({parent["_rev"]}))
    assert answer.below_quorum and store.stats.races_withdrawn == 0  # not ours to decide: provisional


async def test_a_withdrawal_the_quorum_copies_lack_yet_is_no_tampering(store):
    """Issue 21: a GET answered 500 integrity_violation during a race. The reconciler read
    every copy's leaves and found a withdrawal one copy held; the copies a quorum read
    asked next for its history did not hold it yet, and a tombstone without its history
    cannot be told from one moved onto another branch. Its history is asked of every copy."""
    parent = await created(store)

    def history_from_a_quorum(request) -> bool:
        params = dict(request.params)
        return every_leaf(parent["_id"])(request) and params["open_revs"] != "all" and "r" not in params

    missing = [{"missing": "3-0123456789abcdef0123456789abcdef"}]  # what copies lacking the leaf answer
    race(store, parent, "theirs", FUTURE)
    store.db.couch.transport.inject(Fault(history_from_a_quorum, applied=False, status=200, body=missing, times=None))
    with pytest.raises(StaleRevision) as stale:  # withdrawn, then read again: merged above the withdrawal
        await store.replace(NOTE, parent["_id"], {"title": "mine"}, frozenset({parent["_rev"]}))
    assert stale.value.representation["title"] == "theirs"
    [outcome] = await store.reconciler.reconcile([(NOTE, parent["_id"])])  # what a read or the sweeper runs
    assert outcome.status is not Status.TAMPERED, outcome.reason
    assert (await store.read(NOTE, parent["_id"]))["title"] == "theirs"


def rival_claim(store: DocumentStore, key: str, docid: str, digest: str):
    """A fault placing another sidecar's claim of ``key`` beside ours just before the claimer
    looks at every copy (our claim got 202: it raced): replication style, revision 1-``digest``."""
    record_id = idempotency.record_id("note", key)
    rival = Lifecycle(store.lifecycle.keys, "other-sidecar").claim(
        NOTE, key, docid, {"title": "t"}, dt.datetime.now(dt.UTC), 60.0, None
    )

    async def replicated(_request) -> None:
        branch = {**rival, "_rev": f"1-{digest}", "_revisions": {"start": 1, "ids": [digest]}}
        assert await store.db.bulk_docs([branch], new_edits=False) == []

    store.db.couch.transport.inject(Fault(WRITES, status=202))  # the claim
    store.db.couch.transport.inject(Fault(every_leaf(record_id), before=replicated))


async def test_of_two_claims_stored_below_quorum_the_highest_creates(store):
    rival_claim(store, "k-high", "rivals-doc", "f" * 32)  # the rival's revision is the highest
    answer = await store.create(NOTE, {"title": "t"}, idempotency_key="k-high")
    assert answer.id == "rivals-doc"  # ours lost: it followed the rival's record (whose claimer died)
    docs = [row["id"] for row in (await store.db.all_docs()).rows if not row["id"].startswith("ds-idem-")]
    assert docs == ["rivals-doc"]


async def test_a_claim_stored_below_quorum_that_is_the_highest_proceeds(store):
    rival_claim(store, "k-low", "rivals-doc", "0" * 32)
    answer = await store.create(NOTE, {"title": "t"}, idempotency_key="k-low")
    assert answer.created and answer.id != "rivals-doc"
    assert not (await store.create(NOTE, {"title": "t"}, idempotency_key="k-low")).created  # the record reconciled


def quorum_read_of(docid: str):
    """A read of ``docid`` by a quorum (no ``r``): by ``_bulk_get`` or by ``open_revs``."""

    def matches(request) -> bool:
        if "r" in dict(request.params):
            return False
        if request.path == "/db/_bulk_get":
            return docid.encode() in (request.body or b"")
        return request.path == f"/db/{docid}"

    return matches


def absent(docid: str):
    """What copies that never received ``docid`` answer a quorum read of it (``_bulk_get``)."""
    missing = {"id": docid, "rev": "undefined", "error": "not_found", "reason": "missing"}
    return {"results": [{"id": docid, "docs": [{"error": missing}]}]}


async def test_a_retry_whose_quorum_misses_the_first_attempts_claim_replays_it(store):
    """Issue 21 (the fault schedule in CI: one key, two documents): an attempt's claim and
    document were stored on the copy of one node, and its answer was lost. The retry's
    quorum asks copies that have not received the claim yet; records are read from every
    copy, so the retry finds the claim and answers its document."""
    first = await store.create(NOTE, {"title": "t"}, idempotency_key="lost-answer")
    record_id = idempotency.record_id("note", "lost-answer")
    quorum = Fault(quorum_read_of(record_id), applied=False, status=200, body=absent(record_id), times=None)
    store.db.couch.transport.inject(quorum)
    again = await store.create(NOTE, {"title": "t"}, idempotency_key="lost-answer")
    assert (again.id, again.created) == (first.id, False)
    docs = [row["id"] for row in (await store.db.all_docs()).rows if not row["id"].startswith("ds-idem-")]
    assert docs == [first.id]


async def test_a_keyed_create_whose_claim_is_below_quorum_is_answered_not_met(store):
    """A claim stored on some copies only (202): a copy it could not reach may hold a claim
    of the same key made meanwhile (a partition), so the key's document is provisional —
    even when the document itself reached every copy."""
    store.db.couch.transport.inject(Fault(WRITES, status=202))  # the claim; the document then gets 201
    answer = await store.create(NOTE, {"title": "t"}, idempotency_key="partitioned")
    assert answer.created and answer.below_quorum
    assert not (await store.create(NOTE, {"title": "u"})).below_quorum  # a create without a key: 201


async def test_a_provisional_write_is_not_cached(server, keys):
    """A write stored below quorum beside a racing leaf stands provisionally (not-met) —
    here it even lost the policy, and its withdrawal did not reach every copy. What a read
    shows is the policy's decision, so the cache does not keep the write's result: in a
    faults history run a sidecar served such a leaf from memory 2 s after the racing
    branch's acknowledged writes."""
    async with memory_couch(server) as couch:
        await couch.database("db").create()
        cache = Cache(1 << 20)
        cache.resume()  # as a live feed keeps it
        store = DocumentStore(couch.database("db"), IdPool(couch), keys, cache=cache)
        parent = await created(store)
        race(store, parent, "theirs", FUTURE)
        store.db.couch.transport.inject(Fault(WRITES, status=202, times=2))  # the withdrawal: below quorum too
        answer = await store.replace(NOTE, parent["_id"], {"title": "mine"}, frozenset({parent["_rev"]}))
        assert answer.below_quorum and orjson.loads(answer.body)["title"] == "mine"
        assert cache.peek(parent["_id"], "note") is None
        assert (await store.read(NOTE, parent["_id"]))["title"] == "theirs"
