"""The background sweeps on the in-memory CouchDB: conflicts (``store/sweeper.py``) and
expired Idempotency-Key records (``Claims.expire``). Their views only name candidates —
the reconciler reads every leaf again before it counts or writes anything; a record's
tombstone is written on the revision the view named — so the views' answers are canned
here, as CouchDB's views would give them; the views themselves are tested on a server
(tests/server/test_conflicts_replicated.py, tests/server/test_idempotency.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from contracts.store_setup import NOTE, created, edited, new_store
from support.conflicts import CART, MODELS, PROFILE, fork

from data_service import idempotency
from data_service.couchdb.memory import Fault, matching, memory_couch
from data_service.design import CONFLICTS_NAME, IDEMPOTENCY_NAME
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.protection import Keyring
from data_service.store.reconciler import Status
from data_service.store.sweeper import conflicted_count, run_sweeper, sweep

VIEW = matching("GET", rf"/db/_design/{CONFLICTS_NAME}/_view/.*")


@pytest.fixture
async def store(keys_dir):
    async with memory_couch() as couch:
        await couch.database("db").create()
        yield new_store(couch.database("db"), Keyring(KeysDir(keys_dir), "db"), "w-store")


async def conflicted(store, model, body: dict, *changes: dict) -> str:
    doc = await created(store, model, body)
    writers = [Lifecycle(store.lifecycle.keys, f"w{n}") for n in range(len(changes))]
    await fork(store.db, doc, *(edited(w, model, doc, c) for w, c in zip(writers, changes, strict=True)))
    return doc["_id"]


def candidates(store, rows: list[tuple[str, str]], times: int | None = 1) -> None:
    """The view's answer: ``rows`` of (type tag, id)."""
    body = {"total_rows": len(rows), "offset": 0, "rows": [{"id": i, "key": [t, i], "value": 1} for t, i in rows]}
    store.db.couch.transport.inject(Fault(VIEW, applied=False, status=200, body=body, times=times))


async def test_a_pass_reconciles_the_candidates_and_reports_what_it_could_not(store):
    merged = await conflicted(store, CART, {"owner": "o"}, {"visits": 1}, {"visits": 2})
    stuck = await conflicted(store, PROFILE, {"name": "n"}, {"account": "a1"}, {"account": "a2"})
    settled = (await created(store, PROFILE, {"name": "t"}))["_id"]  # the view was behind: nothing to do
    candidates(store, [("cart_v1.0", merged), ("profile_v1.0", stuck), ("profile_v1.0", settled), ("cart_v1.0", "x")])
    report = await sweep(store.reconciler, MODELS)
    assert report.conflicted == 2 and report.resolved == 1 and not report.complete
    assert [o.docid for o in report.having(Status.UNRESOLVABLE)] == [stuck]
    assert {o.status for o in report.outcomes} == {Status.RESOLVED, Status.UNRESOLVABLE, Status.CLEAN, Status.GONE}
    assert (await store.read(CART, merged))["visits"] == 3 and report.discarded == []
    candidates(store, [("cart_v1.0", merged)])
    assert (await sweep(store.reconciler, MODELS)).complete  # resolved: clean now


async def test_the_count_and_the_background_sweep(store, caplog):
    merged = await conflicted(store, CART, {"owner": "o"}, {"visits": 1}, {"visits": 2})
    candidates(store, [("cart_v1.0", merged)], times=2)
    assert await conflicted_count(store.db) == 1
    caplog.set_level(logging.INFO, logger="data_service.conflicts")
    task = asyncio.create_task(run_sweeper(store.reconciler, MODELS, 0.01))
    try:
        for _ in range(500):
            if "reconcile: 1 conflicted, 1 resolved" in caplog.text:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "reconcile: 1 conflicted, 1 resolved, 0 unresolvable, 0 busy" in caplog.text


async def test_expired_records_are_removed_with_signed_tombstones(store):
    for key in ("k1", "k2"):
        await store.create(NOTE, {"title": key}, idempotency_key=key)
    records = [await store.db.get(idempotency.record_id("note", key)) for key in ("k1", "k2")]
    rows = [{"id": r["_id"], "key": r["expires_at"], "value": r["_rev"]} for r in records]
    view, transport = matching("GET", rf"/db/_design/{IDEMPOTENCY_NAME}/_view/.*"), store.db.couch.transport
    transport.inject(Fault(view, applied=False, status=200, body={"total_rows": 2, "offset": 0, "rows": rows}))
    transport.inject(
        Fault(view, applied=False, status=200, body={"total_rows": 0, "offset": 0, "rows": []}, times=None)
    )
    assert await store.claims.expire(page=2) == 2  # a full page: the view is asked again
    assert await store.expire_idempotency_records() == 0
    for record in records:
        [tombstone] = [e["ok"] for e in await store.db.open_revs(record["_id"]) if "ok" in e]
        assert tombstone["_deleted"] and tombstone["meta"]["removed"] == "expired"
