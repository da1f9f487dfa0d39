"""Store contract, part 2: bulk writes (``DocumentStore.write``) — the same decisions
per item as single writes, one answer each in order, a bad item never blocking good
ones, one document or one Idempotency-Key twice in a request refused (422), and the
round's writes in one ``_bulk_docs``. Subclassed per backend."""

from __future__ import annotations

import uuid

import orjson
from contracts.store_setup import NOTE, USER, StoreSetup

from data_service import idempotency
from data_service.lifecycle import Op
from data_service.models import ValidationFailed
from data_service.protection import IntegrityViolation
from data_service.store import ANY_REVISION, Answer, Change, DocumentNotFound, StaleRevision


def note(i: int) -> dict:
    return {"title": f"bulk {i}", "counter": i}


def creates(n: int, **key) -> list[Change]:
    return [Change(Op.CREATE, None, note(i), **key) for i in range(n)]


def kinds(answers: list) -> list[str]:
    return [type(answer).__name__ for answer in answers]


class StoreBulkContract(StoreSetup):
    async def test_creates_answer_in_order_and_bad_items_block_nothing(self, store, db, requests):
        changes = creates(40)
        for bad in (3, 17, 39):
            changes[bad] = Change(Op.CREATE, None, {"title": ""})
        changes[20] = Change(Op.CREATE, None, {"title": "x", "id": "mine"})  # a reserved name
        answers = await store.write(NOTE, changes)
        failed = {i for i, answer in enumerate(answers) if not isinstance(answer, Answer)}
        assert failed == {3, 17, 20, 39} and all(isinstance(answers[i], ValidationFailed) for i in failed)
        good = [(i, answer) for i, answer in enumerate(answers) if i not in failed]
        assert all(orjson.loads(a.body)["title"] == f"bulk {i}" and a.created for i, a in good)
        assert all(a.rev.startswith("1-") for _, a in good)
        stored = {row["id"]: row["doc"] for row in (await db.all_docs(include_docs=True)).rows}
        assert sorted(stored) == sorted(a.id for _, a in good)
        assert all(doc["sig"]["gen"] == 1 for doc in stored.values())
        assert requests.count("POST", "/_bulk_docs") == 1  # every create in one request

    async def test_the_same_decisions_per_item_in_one_write(self, store, db, requests):
        a, b, c, d, e = await store.write(NOTE, creates(5))
        requests.sent.clear()
        missing = uuid.uuid4().hex
        answers = await store.write(
            NOTE,
            [
                Change(Op.REPLACE, a.id, {"title": "replaced"}, frozenset({a.rev})),
                Change(Op.PATCH, b.id, {"counter": 99}),  # no If-Match: applied to the current document
                Change(Op.DELETE, c.id, None, frozenset({c.rev})),
                Change(Op.REPLACE, d.id, {"title": "lost"}, frozenset({"1-0000"})),  # stale
                Change(Op.DELETE, d.id, None, frozenset({ANY_REVISION})),  # the same document twice
                Change(Op.DELETE, missing, None, frozenset({ANY_REVISION})),
                Change(Op.REPLACE, a.id, {"title": "x"}, frozenset({ANY_REVISION})),  # a second item for a
                Change(Op.DELETE, e.id, None),  # names no revision
                Change(Op.PATCH, e.id, {"counter": -1}),  # invalid (and e twice)
            ],
        )
        assert kinds(answers) == [
            "Answer",
            "Answer",
            "Answer",
            "StaleRevision",
            "ValidationFailed",
            "DocumentNotFound",
            "ValidationFailed",
            "PreconditionRequired",
            "ValidationFailed",
        ]
        replaced, patched, deleted, stale = answers[:4]
        assert orjson.loads(replaced.body)["title"] == "replaced" and replaced.rev.startswith("2-")
        assert orjson.loads(patched.body)["counter"] == 99 and orjson.loads(patched.body)["title"] == "bulk 1"
        assert deleted.deleted
        assert stale.representation["title"] == "bulk 3" and stale.rev == d.rev
        assert answers[4].violations[0].message == "written twice in one request"
        assert requests.count("POST", "/_bulk_docs") == 1
        left = {row["doc"]["title"] for row in (await db.all_docs(include_docs=True)).rows}
        assert left == {"replaced", "bulk 1", "bulk 3", "bulk 4"}

    async def test_keyed_creates_replay_and_mismatch_per_item(self, store, db):
        items = [Change(Op.CREATE, None, {"email": f"u{i}@example.com", "name": "U"}, key=f"k{i}") for i in range(3)]
        first = await store.write(USER, items)
        again = await store.write(
            USER,
            [Change(Op.CREATE, None, {"email": f"u{i}@example.com", "name": "U"}, key=f"k{i}") for i in range(3)],
        )
        assert all(a.created for a in first) and not any(a.created for a in again)
        assert [a.id for a in first] == [a.id for a in again] and [a.body for a in first] == [a.body for a in again]
        other = await store.write(USER, [Change(Op.CREATE, None, {"email": "u0@example.com", "name": "O"}, key="k0")])
        assert kinds(other) == ["IdempotencyMismatch"]
        assert len([r for r in (await db.all_docs()).rows if not r["id"].startswith("ds-idem-")]) == 3

    async def test_a_key_twice_in_one_request_is_refused_and_creates_once(self, store, db):
        answers = await store.write(
            NOTE, [Change(Op.CREATE, None, note(i), key="same") for i in (1, 2)] + creates(1, key="single")
        )
        assert kinds(answers) == ["Answer", "ValidationFailed", "Answer"]
        assert answers[1].violations[0].path == "/idempotency_key"
        assert answers[1].violations[0].message == "used twice in one request"
        titles = sorted(
            row["doc"]["title"] for row in (await db.all_docs(include_docs=True)).rows if "title" in row["doc"]
        )
        assert titles == ["bulk 0", "bulk 1"]

    async def test_an_edited_record_is_verified_before_its_expiry_is_believed(self, store, db):
        """Issue 22, row 7: bulk read a record's ``expires_at`` before verifying it, so an
        edited (expired-looking) record was re-claimed and a second document created."""
        [first] = await store.write(NOTE, creates(1, key="k-edited"))
        record = await db.get(idempotency.record_id("note", "k-edited"))
        await db.put({**record, "expires_at": "2000-01-01T00:00:00.000Z"})  # made to look expired
        [again] = await store.write(NOTE, creates(1, key="k-edited"))
        assert isinstance(again, IntegrityViolation)
        assert [row["id"] for row in (await db.all_docs()).rows if not row["id"].startswith("ds-idem-")] == [first.id]

    async def test_a_tampered_item_fails_alone(self, store, db):
        a, b = await store.write(NOTE, creates(2))
        raw = await db.get(a.id)
        await db.put({**raw, "title": "Mallory"})
        answers = await store.write(
            NOTE, [Change(Op.PATCH, a.id, {"counter": 5}), Change(Op.PATCH, b.id, {"counter": 6}, frozenset({b.rev}))]
        )
        assert isinstance(answers[0], IntegrityViolation) and orjson.loads(answers[1].body)["counter"] == 6

    async def test_conflicting_items_are_made_again_from_the_current_document(self, store, db, ring, other):
        """A write CouchDB refused (409: someone wrote first) goes round again: a blind
        patch is re-applied, a checked write answers 412 with what is there now."""
        a, b = await store.write(NOTE, creates(2))
        current = {doc["_id"]: doc for doc in [await db.get(a.id), await db.get(b.id)]}
        cached = [Change(Op.PATCH, a.id, {"counter": 50}), Change(Op.PATCH, b.id, {"counter": 60}, frozenset({b.rev}))]
        for docid in (a.id, b.id):  # another sidecar writes both first
            await db.put(other.patch(NOTE, current[docid], {"body": "theirs"}, {}, "2100-01-01T00:00:00.000Z").doc)
        for change in cached:  # the store had them at hand (as from its read cache)
            change.current, change.cached = current[change.docid], True
        patched, stale = await store.write(NOTE, cached)
        assert isinstance(stale, StaleRevision) and stale.representation["body"] == "theirs"
        body = orjson.loads(patched.body)
        assert body["counter"] == 50 and body["body"] == "theirs" and patched.rev.startswith("3-")
        assert store.stats.write_conflicts == 2 and store.stats.patch_retries == 1

    async def test_missing_and_deleted_items(self, store, db):
        [gone] = await store.write(NOTE, creates(1))
        await store.delete(NOTE, gone.id, frozenset({gone.rev}))
        answers = await store.write(
            NOTE,
            [
                Change(Op.PATCH, gone.id, {"counter": 1}),
                Change(Op.REPLACE, uuid.uuid4().hex, note(1), frozenset({ANY_REVISION})),
            ],
        )
        assert all(isinstance(answer, DocumentNotFound) for answer in answers)

    async def test_an_empty_write_sends_nothing(self, store, requests):
        assert await store.write(NOTE, []) == []
        assert not [sent for sent in requests.sent if sent[0] == "POST"]
