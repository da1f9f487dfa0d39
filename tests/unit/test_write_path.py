"""What a write costs (issue 23): the answer is built from the clear values the lifecycle
had — nothing it just encrypted is decrypted again — and serialized once, the bytes the
caller gets and the read cache keeps. A write naming the cached revision reads nothing
first; a stale one answers 412 after two CouchDB requests."""

from __future__ import annotations

import orjson
import pytest
from support import SAMPLE_MODELS

from data_service.cache import Cache
from data_service.couchdb import IdPool
from data_service.couchdb.memory import memory_couch
from data_service.keys import KeysDir
from data_service.models import load_models
from data_service.protection import Keyring, kinds
from data_service.store import DocumentStore, StaleRevision

USER = load_models(SAMPLE_MODELS).get("user")
ALICE = {
    "email": "alice@example.com",
    "name": "Alice",
    "password": "s3cret-pass",
    "ssn": "123-45-6789",
    "country": "NO",
}


@pytest.fixture
async def store(tmp_path):
    KeysDir(tmp_path).create()
    async with memory_couch(record=True) as couch:
        await couch.database("db").create()
        cache = Cache(1 << 20)
        cache.resume()  # as a live feed would
        yield DocumentStore(couch.database("db"), IdPool(couch), Keyring(KeysDir(tmp_path), "db"), cache=cache)


async def test_a_put_decrypts_nothing_it_wrote_and_serializes_its_answer_once(store, monkeypatch):
    created = await store.create(USER, ALICE)
    signed, late_reveals, bodies = [], [], []
    real_sign = Keyring.sign

    def sign(self, doc, gen):
        signed.append(doc["_id"])
        return real_sign(self, doc, gen)

    monkeypatch.setattr(Keyring, "sign", sign)
    for kind in kinds.KINDS.values():
        real = type(kind).reveal

        def reveal(self, keys, slot, stored, real=real):
            if signed:
                late_reveals.append(slot.prop)
            return real(self, keys, slot, stored)

        monkeypatch.setattr(type(kind), "reveal", reveal)
    real_dumps = orjson.dumps

    def dumps(value, *args, **kwargs):
        if isinstance(value, dict) and "id" in value and "meta" in value and "_id" not in value:
            bodies.append(value["id"])  # a representation, not a stored document
        return real_dumps(value, *args, **kwargs)

    monkeypatch.setattr("data_service.store.writes.orjson.dumps", dumps)
    answer = await store.replace(USER, created.id, {**ALICE, "name": "Alice B"}, frozenset({created.rev}))
    assert signed == [created.id] and late_reveals == [] and bodies == [created.id]
    body = orjson.loads(answer.body)
    assert body["name"] == "Alice B" and body["ssn"] == ALICE["ssn"] and "password" not in body
    assert store.cache.get(created.id, "user").body is not None  # the same bytes, kept for the next GET
    assert store.cache.get(created.id, "user").body == answer.body


async def test_a_write_naming_the_cached_revision_reads_nothing_first(store):
    created = await store.create(USER, ALICE)
    requests = store.db.couch.transport.requests
    requests.clear()
    await store.patch(USER, created.id, {"name": "Alice C"}, frozenset({created.rev}))
    assert [(r.method, r.path) for r in requests] == [("POST", "/db/_bulk_docs")]


async def test_a_stale_write_on_a_cache_that_is_behind_costs_two_requests(store):
    created = await store.create(USER, ALICE)
    elsewhere = {**(await store.read(USER, created.id))}
    other = DocumentStore(store.db, store.ids, store.lifecycle.keys)  # another sidecar: this cache never hears
    await other.patch(USER, created.id, {"name": "changed elsewhere"}, None)
    requests = store.db.couch.transport.requests
    requests.clear()
    with pytest.raises(StaleRevision):
        await store.patch(USER, created.id, {"name": "mine"}, frozenset({elsewhere["_rev"]}))
    assert [(r.method, r.path) for r in requests] == [("POST", "/db/_bulk_docs"), ("GET", f"/db/{created.id}")]
