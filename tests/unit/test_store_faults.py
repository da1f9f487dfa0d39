"""Faults on the in-memory CouchDB that the store must meet without serving anything it
did not check: a read whose check of the deleted leaves above the winner (a member's
rollback, docs/consistency.md §3) cannot be made answers the CouchDB error, never the
document as read; a key other requests claim every round is given up, never created."""

from __future__ import annotations

import pytest
from contracts.store_setup import NOTE, new_store, roll_back

from data_service import idempotency
from data_service.couchdb import Unavailable
from data_service.couchdb.memory import Fault, matching, memory_couch
from data_service.keys import KeysDir
from data_service.protection import Keyring
from data_service.store import RetriesExhausted


@pytest.fixture
async def store(keys_dir):
    async with memory_couch() as couch:
        await couch.database("db").create()
        yield new_store(couch.database("db"), Keyring(KeysDir(keys_dir), "db"), "w-store")


async def test_a_rollback_is_never_served_when_its_check_fails(store):
    note = await store.create(NOTE, {"title": "one"})
    first = await store.db.get(note.id)
    await store.replace(NOTE, note.id, {"title": "two"}, frozenset({note.rev}))
    await roll_back(store.db, note.id, first)
    store.db.couch.transport.fail(matching("POST", r"/db/_bulk_get"), status=503, times=None)  # every leaf: no
    with pytest.raises(Unavailable):
        await store.read(NOTE, note.id)


async def test_a_conflict_whose_merge_fails_now_is_served_as_couchdb_picked_it(store):
    """Conflicts alone are no trace of tampering: a read does not fail because its merge did."""
    note = await store.create(NOTE, {"title": "one"})
    current = await store.db.get(note.id)
    sibling = store.lifecycle.patch(NOTE, current, {"title": "sibling"}, {}, "2100-01-01T00:00:00.000Z").doc
    generation, parent = current["_rev"].split("-")
    branch = {**sibling, "_rev": f"2-{'f' * 32}", "_revisions": {"start": 2, "ids": ["f" * 32, parent]}}
    await store.db.bulk_docs([branch], new_edits=False)
    store.db.couch.transport.fail(matching("POST", r"/db/_bulk_get"), status=503, times=None)
    assert (await store.read(NOTE, note.id))["_rev"] == branch["_rev"]


async def test_a_key_claimed_by_others_every_round_gives_up(store):
    record = idempotency.record_id("note", "contested")
    lost = [{"id": record, "error": "conflict", "reason": "Document update conflict."}]
    store.db.couch.transport.inject(
        Fault(matching("POST", "/db/_bulk_docs"), applied=False, status=201, body=lost, times=None)
    )
    with pytest.raises(RetriesExhausted):
        await store.create(NOTE, {"title": "t"}, idempotency_key="contested")
