"""Store contract, part 3: Idempotency-Key claims (``store/claims.py``) — one document
per key however many requests race, a replay answered with the first document, a key
reused with another body refused, a key whose document was deleted consumed, an edited
record an integrity violation (never a reason to create twice), an expired one claimed
again in place, a claim whose claimer died before storing its document completed.
Subclassed per backend. (Sweeping expired records reads a view: tests/server.)"""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson
import pytest
from contracts.store_setup import NOTE, USER, StoreSetup, new_store

from data_service import idempotency
from data_service.envelope import Removed
from data_service.protection import IntegrityViolation
from data_service.store import ANY_REVISION, IdempotencyKeyConsumed, IdempotencyMismatch, KeyInProgress


async def documents(db) -> list[dict]:
    """The documents of a type in the database (no Idempotency-Key records)."""
    rows = (await db.all_docs(include_docs=True)).rows
    return [row["doc"] for row in rows if not idempotency.is_record(row["doc"])]


class StoreClaimsContract(StoreSetup):
    async def test_a_replay_answers_the_first_document(self, store, db):
        first = await store.create(NOTE, {"title": "once"}, idempotency_key="order-7f3a")
        replay = await store.create(NOTE, {"title": "once"}, idempotency_key="order-7f3a")
        assert first.created and not replay.created
        assert (replay.id, replay.rev, replay.body) == (first.id, first.rev, first.body)
        await store.patch(NOTE, first.id, {"title": "changed since"}, None)
        later = await store.create(NOTE, {"title": "once"}, idempotency_key="order-7f3a")
        assert later.id == first.id and orjson.loads(later.body)["title"] == "changed since"  # as it is now
        [record] = [row["doc"] for row in (await db.all_docs(include_docs=True)).rows if row["id"] != first.id]
        assert record["_id"] == idempotency.record_id("note", "order-7f3a") and record["doc_id"] == first.id
        assert record["sig"]["gen"] == 1 and record["expires_at"] > record["created_at"]
        assert len(await documents(db)) == 1

    async def test_a_key_reused_with_another_body_is_refused(self, store, db):
        await store.create(NOTE, {"title": "one"}, idempotency_key="k")
        with pytest.raises(IdempotencyMismatch):
            await store.create(NOTE, {"title": "other"}, idempotency_key="k")
        other_type = await store.create(USER, {"email": "a@example.com", "name": "A"}, idempotency_key="k")
        assert other_type.created  # a key belongs to its type
        assert len(await documents(db)) == 2

    async def test_racing_requests_with_one_key_create_one_document(self, store, db, ring):
        """One creates; the others answer its document, or — those that found the claim
        before its document existed — 503 to retry (``SETTLE``): never a second document."""
        sidecars = [store, new_store(db, ring, "w-second")]
        outcomes = await asyncio.gather(
            *(sidecars[i % 2].create(NOTE, {"title": "raced"}, idempotency_key="race-1") for i in range(10)),
            return_exceptions=True,
        )
        answers = [outcome for outcome in outcomes if not isinstance(outcome, KeyInProgress)]
        assert len({answer.id for answer in answers}) == 1, outcomes
        assert sorted(answer.created for answer in answers) == [False] * (len(answers) - 1) + [True]
        again = await store.create(NOTE, {"title": "raced"}, idempotency_key="race-1")
        assert (again.id, again.created) == (answers[0].id, False)
        assert [doc["title"] for doc in await documents(db)] == ["raced"]

    async def test_a_key_whose_document_was_deleted_is_consumed(self, store, db):
        note = await store.create(NOTE, {"title": "gone"}, idempotency_key="n-1")
        await store.delete(NOTE, note.id, frozenset({note.rev}))  # notes delete hard
        with pytest.raises(IdempotencyKeyConsumed):
            await store.create(NOTE, {"title": "gone"}, idempotency_key="n-1")
        user = await store.create(USER, {"email": "a@example.com", "name": "A"}, idempotency_key="u-1")
        await store.delete(USER, user.id, frozenset({ANY_REVISION}))  # users delete soft
        with pytest.raises(IdempotencyKeyConsumed):
            await store.create(USER, {"email": "a@example.com", "name": "A"}, idempotency_key="u-1")
        assert [doc["_id"] for doc in await documents(db)] == [user.id]  # the soft-deleted one only

    async def test_an_edited_record_is_an_integrity_violation(self, store, db):
        victim = await store.create(NOTE, {"title": "victim's"})
        await store.create(NOTE, {"title": "mine"}, idempotency_key="k-1")
        record = await db.get(idempotency.record_id("note", "k-1"))
        await db.put({**record, "doc_id": victim.id})  # pointed at someone else's document
        with pytest.raises(IntegrityViolation) as violation:
            await store.create(NOTE, {"title": "mine"}, idempotency_key="k-1")
        assert "victim" not in str(violation.value)
        moved = await db.get(idempotency.record_id("note", "k-1"))
        await db.put({**moved, "key": idempotency.key_digest("note", "k-2")})  # made another key's
        with pytest.raises(IntegrityViolation):
            await store.create(NOTE, {"title": "mine"}, idempotency_key="k-1")
        assert len(await documents(db)) == 2

    async def test_a_record_of_another_key_under_this_id_is_an_integrity_violation(self, store, db, other):
        mine = idempotency.record_id("note", "k-mine")
        theirs = other.claim(NOTE, "k-theirs", "d1", {"title": "t"}, dt.datetime.now(dt.UTC), 60.0, None)
        await db.bulk_docs(
            [{**theirs, "_id": mine, "_rev": "1-aa", "_revisions": {"start": 1, "ids": ["aa"]}}], new_edits=False
        )
        with pytest.raises(IntegrityViolation):
            await store.create(NOTE, {"title": "t"}, idempotency_key="k-mine")

    async def test_an_expired_key_is_claimed_again_in_place(self, store, db, ring):
        # a TTL a loaded machine cannot outlast between two creates (0.05 s could: the replay
        # then found the record expired and created again)
        brief = new_store(db, ring, "w-brief", idempotency_ttl=1.0)
        first = await brief.create(NOTE, {"title": "t"}, idempotency_key="ttl-1")
        assert not (await brief.create(NOTE, {"title": "t"}, idempotency_key="ttl-1")).created
        await asyncio.sleep(1.05)
        again = await brief.create(NOTE, {"title": "t"}, idempotency_key="ttl-1")
        assert again.created and again.id != first.id  # expired: a new document under a new claim
        record = await db.get(idempotency.record_id("note", "ttl-1"))
        assert record["_rev"].startswith("2-") and record["doc_id"] == again.id and record["sig"]["gen"] == 2
        assert len(await documents(db)) == 2

    async def test_a_claim_whose_document_was_never_stored_is_completed(self, store, db, other):
        """The claimer died between storing its claim and its document: once the claim is
        settled the replay creates the document the record names (once). Before, its claimer
        may be at work, or its claim may lose to a rival on a copy not read: retry (503)."""
        now = dt.datetime.now(dt.UTC)
        await db.put(other.claim(NOTE, "k-at-work", "not-yet", {"title": "t"}, now, 60.0, None))
        with pytest.raises(KeyInProgress):
            await store.create(NOTE, {"title": "t"}, idempotency_key="k-at-work")
        assert await documents(db) == []
        settled = now - dt.timedelta(seconds=idempotency.SETTLE + 1)
        await db.put(other.claim(NOTE, "k-died", "never-stored", {"title": "t"}, settled, 60.0, None))
        answer = await store.create(NOTE, {"title": "t"}, idempotency_key="k-died")
        assert answer.id == "never-stored" and answer.created
        assert not (await store.create(NOTE, {"title": "t"}, idempotency_key="k-died")).created
        assert [doc["_id"] for doc in await documents(db)] == ["never-stored"]

    async def test_expired_records_are_claimed_over_a_tombstone(self, store, db, other):
        """A swept record leaves a signed tombstone; the key is claimed again on its
        branch, signed for that generation, and the replay verifies it."""
        first = await store.create(NOTE, {"title": "t"}, idempotency_key="swept")
        record = await db.get(idempotency.record_id("note", "swept"))
        assert (await db.bulk_docs([other.tombstone(record, Removed.EXPIRED)]))[0]["rev"].startswith("2-")
        await store.delete(NOTE, first.id, frozenset({first.rev}))
        again = await store.create(NOTE, {"title": "t"}, idempotency_key="swept")
        assert again.created and again.id != first.id
        claimed = await db.get(idempotency.record_id("note", "swept"))
        assert claimed["_rev"].startswith("3-") and claimed["sig"]["gen"] == 3
        assert (await store.create(NOTE, {"title": "t"}, idempotency_key="swept")).id == again.id
