"""Idempotency-Key over HTTP: what a replay, a mismatch and a consumed key answer, and the
sweep of expired records (it reads a view). What the store decides for each key —
replays, mismatches, racing claims, consumed keys, edited records, expiry — is the store
contract's (tests/contracts/store_claims.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace

from support import install_design_docs, running_app
from support.documents import stored_docs

from data_service import idempotency


async def records(db) -> list[dict]:
    rows = (await db.all_docs(include_docs=True)).rows
    return [row["doc"] for row in rows if row["doc"] and idempotency.is_record(row["doc"])]


def keyed(key: str) -> dict:
    return {"Idempotency-Key": key}


async def test_idempotency_key_replay_creates_one_document(api, db):
    first = await api.request("POST", "/v1/note", json={"title": "once"}, headers=keyed("order-7f3a-attempt"))
    replay = await api.request("POST", "/v1/note", json={"title": "once"}, headers=keyed("order-7f3a-attempt"))
    assert first.status == 201 and replay.status == 200
    assert replay.body == first.body and replay.etag == first.etag
    assert replay.headers["Location"] == first.headers["Location"]
    mismatch = await api.request("POST", "/v1/note", json={"title": "other"}, headers=keyed("order-7f3a-attempt"))
    assert mismatch.status == 422 and mismatch.body["code"] == "idempotency_key_mismatch"
    assert [d["title"] for d in await stored_docs(db)] == ["once"]


async def test_a_replay_after_the_delete_creates_nothing(api, db):
    note = await api.request("POST", "/v1/note", json={"title": "gone"}, headers=keyed("n-1"))
    assert (await api.request("DELETE", f"/v1/note/{note.body['id']}", headers={"If-Match": note.etag})).status == 204
    replay = await api.request("POST", "/v1/note", json={"title": "gone"}, headers=keyed("n-1"))
    assert replay.status == 409 and replay.body["code"] == "idempotency_key_consumed"
    assert replay.body["retryable"] is False and await stored_docs(db) == []


async def test_expired_keys_are_forgotten_and_their_records_swept(config, db, http):
    await install_design_docs(db)
    async with running_app(replace(config, idempotency_ttl=0.3)) as (base, ctx):

        async def post() -> int:
            async with http.post(f"{base}/v1/note", json={"title": "t"}, headers=keyed("ttl-1")) as resp:
                return resp.status

        assert await post() == 201
        assert await post() == 200
        await asyncio.sleep(0.4)
        assert await post() == 201  # expired: a new document under a new claim of the key
        assert len(await stored_docs(db)) == 2
        assert len(await records(db)) == 1  # the claim was renewed in place
        await asyncio.sleep(0.4)
        assert await ctx.store.expire_idempotency_records() == 1
        assert await records(db) == []
        assert await ctx.store.expire_idempotency_records() == 0
        # claimed again over the swept record's tombstone (CouchDB continues its branch: generation 4),
        # signed for that generation: the replay verifies it
        assert await post() == 201
        [record] = await records(db)
        assert record["_rev"].startswith("4-") and record["sig"]["gen"] == 4
        assert await post() == 200


async def test_a_replay_of_a_key_still_being_created_is_told_to_retry(config, db, http):
    """A claim whose document does not exist yet: its claimer may be at work (or its claim
    may yet lose to a rival on another copy), so the replay creates nothing and answers 503."""
    await install_design_docs(db)
    async with running_app(config) as (base, ctx):
        model = ctx.models.get("note")
        now = dt.datetime.now(dt.UTC)
        await db.put(ctx.store.lifecycle.claim(model, "at-work", "not-yet-created", {"title": "t"}, now, 60.0, None))
        async with http.post(f"{base}/v1/note", json={"title": "t"}, headers=keyed("at-work")) as resp:
            body = await resp.json()
            assert (resp.status, body["code"]) == (503, "conflict_retries_exhausted")
            assert resp.headers["Retry-After"] and "Idempotency-Key" in body["detail"]
        assert await stored_docs(db) == []
