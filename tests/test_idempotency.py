"""Idempotency-Key: one document per key, atomic on every CouchDB (records are ordinary
documents, claimed with a PUT that loses with 409), signed, expiring, never re-creating
a deleted document."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from support import install_design_docs, running_app
from test_api import USER, stored_docs

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
    racing = await asyncio.gather(
        *(api.request("POST", "/v1/note", json={"title": "raced"}, headers=keyed("race-1")) for _ in range(10))
    )
    assert len({r.body["id"] for r in racing}) == 1 and sorted(r.status for r in racing) == [200] * 9 + [201]
    assert sorted(d["title"] for d in await stored_docs(db)) == ["once", "raced"]
    claims = await records(db)
    assert sorted(r["doc_id"] for r in claims) == sorted([first.body["id"], racing[0].body["id"]])
    assert all(r["sig"]["mac"] and r["expires_at"] > r["created_at"] for r in claims)
    assert not any(r["_id"].startswith("_local/") for r in claims)


async def test_a_replay_after_the_delete_creates_nothing(api, db):
    note = await api.request("POST", "/v1/note", json={"title": "gone"}, headers=keyed("n-1"))
    assert (await api.request("DELETE", f"/v1/note/{note.body['id']}", headers={"If-Match": note.etag})).status == 204
    replay = await api.request("POST", "/v1/note", json={"title": "gone"}, headers=keyed("n-1"))
    assert replay.status == 409 and replay.body["code"] == "idempotency_key_consumed"
    assert replay.body["retryable"] is False

    user = await api.request("POST", "/v1/user", json=USER, headers=keyed("u-1"))  # user deletes soft
    assert (await api.request("DELETE", f"/v1/user/{user.body['id']}", headers={"If-Match": user.etag})).status == 204
    again = await api.request("POST", "/v1/user", json=USER, headers=keyed("u-1"))
    assert again.status == 409 and again.body["code"] == "idempotency_key_consumed"
    assert [d["_id"] for d in await stored_docs(db)] == [user.body["id"]]  # the soft-deleted one only


async def test_an_edited_record_is_an_integrity_violation(api, db):
    victim = await api.request("POST", "/v1/note", json={"title": "victim's"})
    await api.request("POST", "/v1/note", json={"title": "mine"}, headers=keyed("k-1"))
    [record] = await records(db)
    await db.put({**record, "doc_id": victim.body["id"]})  # an administrator points the key elsewhere
    replay = await api.request("POST", "/v1/note", json={"title": "mine"}, headers=keyed("k-1"))
    assert replay.status == 500 and replay.body["code"] == "integrity_violation"
    assert "victim" not in str(replay.body)
    assert len(await stored_docs(db)) == 2


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
