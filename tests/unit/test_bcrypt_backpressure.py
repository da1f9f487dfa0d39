"""bcrypt backpressure (issue 12, finding 4), without a server: the bounded queue, the
bounded wait, and one hash per request however often a PATCH retries (fake transport)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from support.fakes import FakeTransport

from data_service.couchdb import CouchDB, IdPool, Request
from data_service.keys import KeysDir
from data_service.models import parse_models
from data_service.protection import Keyring
from data_service.store import DocumentStore
from data_service.store.hashing import Busy, Hasher

ACCOUNT = parse_models(
    {
        "types": {
            "account": {
                "version": "1.0",
                "properties": {
                    "name": {"type": "string"},
                    "pin": {"type": "string", "protection": "bcrypt", "bcrypt_cost": 10},
                },
            }
        }
    }
).types["account"]


async def test_a_full_queue_answers_busy_at_once():
    gate = threading.Event()
    hasher = Hasher(ThreadPoolExecutor(max_workers=1), limit=2)
    first = asyncio.ensure_future(hasher.run(gate.wait, 10))
    second = asyncio.ensure_future(hasher.run(lambda: "second"))
    await asyncio.sleep(0)
    with pytest.raises(Busy, match="the limit is 2"):
        await hasher.run(lambda: "third")
    assert hasher.pending == 2 and hasher.refused == 1
    gate.set()
    assert await first is True and await second == "second"
    assert hasher.pending == 0 and await hasher.run(lambda: "again") == "again"
    with hasher.reserved():  # a verify holds its place across its CouchDB read
        assert hasher.pending == 1 and await hasher.run(lambda: "held", reserved=True) == "held"
        with hasher.reserved(), pytest.raises(Busy):
            hasher.reserved().__enter__()
    assert hasher.pending == 0


async def test_a_job_that_waited_too_long_is_not_run():
    now = [0.0]
    gate, ran = threading.Event(), []
    hasher = Hasher(ThreadPoolExecutor(max_workers=1), limit=10, max_wait=5.0, clock=lambda: now[0])
    blocking = asyncio.ensure_future(hasher.run(gate.wait, 10))
    late = asyncio.ensure_future(hasher.run(ran.append, "late"))
    await asyncio.sleep(0)
    now[0] = 5.1  # the second job is still waiting for the one thread
    gate.set()
    await blocking
    with pytest.raises(Busy, match="waited 5 s"):
        await late
    assert ran == [] and hasher.refused == 1 and hasher.jobs == 1


class Conflicting:
    """CouchDB 3.5 (single node) holding one account; the first ``conflicts`` writes to
    it lose to another writer (409)."""

    def __init__(self, doc: dict, conflicts: int) -> None:
        self.doc, self.conflicts, self.writes = doc, conflicts, 0

    def __call__(self, request: Request) -> tuple[int, object]:
        if request.method == "GET" and request.path == "/":
            return 200, {"couchdb": "Welcome", "version": "3.5.2"}
        if request.method == "GET" and request.path == "/db":
            return 200, {"db_name": "db", "cluster": {"n": 1}}
        if request.method == "GET":
            return 200, self.doc
        self.writes += 1
        [body] = orjson.loads(request.body)["docs"]
        if self.writes <= self.conflicts:
            return 201, [{"id": body["_id"], "error": "conflict", "reason": "Document update conflict."}]
        return 201, [{"ok": True, "id": body["_id"], "rev": "4-" + "d" * 32}]


async def test_a_patch_without_if_match_hashes_once_however_often_it_retries(tmp_path):
    KeysDir(tmp_path).create()
    keys = Keyring(KeysDir(tmp_path), "db")
    stamp = "2026-01-01T00:00:00.000Z"
    doc = keys.sign(
        {
            "_id": "a1",
            "_rev": "3-" + "c" * 32,
            "type": "account_v1.0",
            "name": "x",
            "meta": {"created_at": stamp, "updated_at": stamp},
        },
        3,
    )
    fake = Conflicting(doc, conflicts=3)
    couch = CouchDB("http://couch.invalid", transport=FakeTransport(fake))
    hasher = Hasher()

    async def no_sleep(_: float) -> None:
        return None

    store = DocumentStore(couch.database("db"), IdPool(couch), keys, hasher=hasher, sleep=no_sleep)
    answer = await store.patch(ACCOUNT, "a1", {"pin": "1234-5678"}, None)
    assert answer.rev.startswith("4-") and fake.writes == 4 and store.stats.patch_retries == 3
    assert hasher.jobs == 1  # hashed before the loop, not once per attempt
