"""Writes CouchDB stores below its write quorum (202), through a fake transport: a write
that raced another sidecar's write is undone and answered as stale; otherwise it stands
and says so."""

from __future__ import annotations

import orjson
import pytest
from support import SAMPLE_MODELS
from test_couchdb_unit import FakeTransport

from data_service.couchdb import CouchDB, IdPool, Request, Timeout
from data_service.keys import KeysDir
from data_service.models import load_models
from data_service.protection import Keyring
from data_service.store import DocumentStore, StaleRevision

NOTE = load_models(SAMPLE_MODELS).get("note")


class OneDocument:
    """A CouchDB holding one document whose next write is stored below quorum (202),
    with ``rival`` (if any) as a second leaf a concurrent write left on other copies."""

    def __init__(self, doc: dict, rival: str | None) -> None:
        self.doc, self.rival = doc, rival
        self.puts: list[dict] = []

    def __call__(self, request: Request) -> tuple[int, object]:
        params = dict(request.params)
        if request.method == "GET" and "open_revs" in params:
            ours = {"_id": self.doc["_id"], "_rev": self.puts[-1]["rev"]}
            rivals = [{"ok": {"_id": self.doc["_id"], "_rev": self.rival}}] if self.rival else []
            return 200, [{"ok": ours}, *rivals]
        if request.method == "GET":
            return 200, self.doc
        body = orjson.loads(request.body) if request.body else {}
        generation = int(body.get("_rev", params.get("rev", "0-x")).split("-")[0]) + 1
        rev = f"{generation}-{'a' * 32}" if not self.puts else f"{generation}-{'b' * 32}"
        self.puts.append({"method": request.method, "body": body, "rev": rev})
        return (202 if len(self.puts) == 1 else 201), {"ok": True, "id": self.doc["_id"], "rev": rev}


@pytest.fixture
def protector(tmp_path) -> Keyring:
    KeysDir(tmp_path).create()
    return Keyring(KeysDir(tmp_path), "db")


def stored_note(protector: Keyring) -> dict:
    return protector.sign(
        {
            "_id": "n1",
            "_rev": "3-" + "c" * 32,
            "type": "note_v1.0",
            "title": "before",
            "meta": {"created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z"},
        },
        3,
    )


def store_on(fake: OneDocument, protector: Keyring) -> DocumentStore:
    couch = CouchDB("http://couch.invalid", transport=FakeTransport(fake))
    return DocumentStore(couch.database("db"), IdPool(couch), protector)


async def test_a_202_that_raced_another_write_is_undone_and_stale(protector):
    before = stored_note(protector)
    fake = OneDocument(before, rival="4-" + "f" * 32)
    store = store_on(fake, protector)
    with pytest.raises(StaleRevision):
        await store.patch(NOTE, "n1", {"title": "mine"}, frozenset({before["_rev"]}))
    write, undo = fake.puts
    assert write["body"]["title"] == "mine" and write["rev"].startswith("4-")
    # the undo puts the content it overwrote back on top of our leaf: older than the rival, it loses the merge
    assert undo["method"] == "PUT" and undo["body"]["_rev"] == write["rev"]
    unsigned = ("_rev", "sig")
    assert {k: v for k, v in undo["body"].items() if k not in unsigned} == {
        k: v for k, v in before.items() if k not in unsigned
    }
    # re-signed by the lifecycle for the generation it lands on (over 4-…: generation 5), so it verifies there
    assert undo["body"]["sig"]["gen"] == 5
    protector.verify({**undo["body"], "_rev": "5-" + "e" * 32})
    assert store.stats.writes_below_quorum == 1 and store.stats.quorum_races_lost == 1


async def test_a_202_without_a_rival_stands_below_quorum(protector):
    fake = OneDocument(stored_note(protector), rival=None)
    shown = await store_on(fake, protector).patch(NOTE, "n1", {"title": "mine"}, None)
    assert shown.below_quorum and shown.body["title"] == "mine" and len(fake.puts) == 1
    assert shown.body["meta"]["updated_at"] > "2026-01-01T00:00:00.000Z"


async def test_a_hard_delete_that_raced_a_write_is_stale(protector):
    before = stored_note(protector)
    fake = OneDocument(before, rival="4-" + "f" * 32)
    with pytest.raises(StaleRevision):
        await store_on(fake, protector).delete(NOTE, "n1", frozenset({before["_rev"]}))
    assert [p["method"] for p in fake.puts] == ["DELETE"]  # a tombstone is no live leaf: nothing to undo


def test_a_write_is_always_later_than_what_it_overwrites():
    from data_service.envelope import later

    current = {"meta": {"updated_at": "2026-01-01T00:00:00.999Z"}}
    assert later(current, "2026-01-01T00:00:00.999Z") == "2026-01-01T00:00:01.000Z"
    assert later(current, "2025-12-31T23:59:59.000Z") == "2026-01-01T00:00:01.000Z"  # a clock behind
    assert later(current, "2026-01-01T00:00:02.000Z") == "2026-01-01T00:00:02.000Z"


class LostAnswer:
    """A CouchDB whose answer to the first PUT is lost after the write landed (a timeout):
    the client's retry then meets its own write and gets 409."""

    def __init__(self, doc: dict) -> None:
        self.doc, self.puts = doc, 0

    def __call__(self, request: Request):
        if request.method == "GET":
            return 200, self.doc
        self.puts += 1
        if self.puts == 1:
            self.doc = {**orjson.loads(request.body), "_rev": "4-" + "d" * 32}
            return Timeout("PUT", request.path, reason="no response in time")
        return 409, {"error": "conflict", "reason": "Document update conflict."}


async def test_a_retried_write_that_had_landed_is_a_success_not_a_conflict(protector):
    before = stored_note(protector)
    fake = LostAnswer(before)
    couch = CouchDB("http://couch.invalid", transport=FakeTransport(fake), sleep=_no_wait)
    store = DocumentStore(couch.database("db"), IdPool(couch), protector)
    shown = await store.patch(NOTE, "n1", {"title": "mine"}, frozenset({before["_rev"]}))
    assert fake.puts == 2 and shown.rev == "4-" + "d" * 32 and shown.body["title"] == "mine"


async def _no_wait(seconds: float) -> None:
    return None
