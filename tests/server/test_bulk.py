"""Bulk writes: 500 items in one request, each checked, protected and signed like a
single write, one result per item in order; bad items never block good ones."""

from __future__ import annotations

from support.documents import ALICE, stored_docs


def note(i: int) -> dict:
    return {"title": f"bulk {i}", "counter": i}


async def bulk(api, items: list[dict], type_name: str = "note"):
    reply = await api.request("POST", f"/v1/{type_name}/_bulk", json={"items": items})
    assert reply.status == 200, reply.body
    return reply.body["results"]


async def test_500_items_with_some_invalid_ones(api, db):
    items = [{"op": "create", "body": note(i)} for i in range(500)]
    for bad in (7, 123, 499):
        items[bad] = {"op": "create", "body": {"title": ""}}  # minLength 1
    items[250] = {"op": "create", "body": {"title": "x", "id": "mine"}}  # reserved name
    items[300] = {"op": "frobnicate"}
    results = await bulk(api, items)
    assert len(results) == 500
    failed = {n for n, r in enumerate(results) if r["status"] != 201}
    assert failed == {7, 123, 499, 250, 300}
    assert (
        results[7]["problem"]["code"] == "validation_failed" and results[250]["problem"]["code"] == "reserved_property"
    )
    assert all(results[n]["body"]["title"] == f"bulk {n}" for n in range(500) if n not in failed)  # request order
    assert all(
        r["etag"] == f'"{r["etag"][1:-1]}"' and r["etag"].startswith('"1-') for r in results if r["status"] == 201
    )
    stored = await stored_docs(db)
    assert len(stored) == 495 and all(
        set(d["sig"]) == {"v", "kid", "gen", "mac"} and d["sig"]["gen"] == 1 for d in stored
    )


async def test_updates_deletes_and_their_preconditions(api, db):
    created = await bulk(api, [{"op": "create", "body": note(i)} for i in range(4)])
    a, b, c, d = created
    results = await bulk(
        api,
        [
            {"op": "replace", "id": a["id"], "if_match": a["etag"], "body": {"title": "replaced"}},
            {"op": "patch", "id": b["id"], "patch": {"counter": 99}},  # no If-Match: applied to the current doc
            {"op": "delete", "id": c["id"], "if_match": c["etag"]},
            {"op": "replace", "id": d["id"], "if_match": '"1-0000"', "body": {"title": "lost"}},  # stale
            {"op": "delete", "id": d["id"]},  # the same document twice in one request
            {"op": "delete", "id": "0123456789abcdef0123456789abcdef", "if_match": "*"},
            {"op": "replace", "id": a["id"], "body": {"title": "x"}},  # a second item for a
        ],
    )
    assert [r["status"] for r in results] == [200, 200, 204, 412, 422, 404, 422]
    assert results[0]["body"]["title"] == "replaced" and results[0]["etag"].startswith('"2-')
    assert results[1]["body"]["counter"] == 99 and results[1]["body"]["title"] == "bulk 1"
    assert results[3]["problem"]["current"]["title"] == "bulk 3" and results[3]["problem"]["retryable"] is True
    missing_precondition = await bulk(api, [{"op": "delete", "id": a["id"]}])
    assert missing_precondition[0]["status"] == 428
    assert sorted(x["title"] for x in await stored_docs(db)) == ["bulk 1", "bulk 3", "replaced"]


async def test_protected_values_and_idempotency_per_item(api, db):
    items = [
        {"op": "create", "body": {**ALICE, "email": f"u{i}@example.com"}, "idempotency_key": f"k{i}"} for i in range(3)
    ]
    first = await bulk(api, items, "user")
    again = await bulk(api, items, "user")  # a replayed request creates nothing
    assert [r["status"] for r in first] == [201] * 3 and [r["status"] for r in again] == [200] * 3
    assert [r["id"] for r in first] == [r["id"] for r in again]
    raw = [d for d in await stored_docs(db) if d["type"].startswith("user")]
    assert len(raw) == 3 and all(d["password"].startswith("$2b$") and d["ssn"].startswith("aead2:") for d in raw)
    assert "password" not in first[0]["body"] and first[0]["body"]["ssn"] == ALICE["ssn"]
    other = await bulk(api, [{**items[0], "body": {**items[0]["body"], "name": "Other"}}], "user")
    assert other[0]["status"] == 422 and other[0]["problem"]["code"] == "idempotency_key_mismatch"


async def test_limits_and_shape(api):
    too_many = await api.request("POST", "/v1/note/_bulk", json={"items": [{"op": "create", "body": note(0)}] * 501})
    assert too_many.status == 413 and too_many.body["code"] == "payload_too_large"
    shapeless = await api.request("POST", "/v1/note/_bulk", json=[{"op": "create"}])
    assert shapeless.status == 422
    assert await bulk(api, []) == []


async def test_one_idempotency_key_rule_for_header_and_bulk(api, db):
    """Issue 22, row 10: the bulk path took keys the header refuses ("a b") and answered a
    key used twice in one request 412 ``stale_revision``."""
    spaced = await bulk(api, [{"op": "create", "body": note(1), "idempotency_key": "a b"}])
    header = await api.request("POST", "/v1/note", json=note(1), headers={"Idempotency-Key": "a b"})
    assert header.status == 400 and spaced[0]["status"] == 422
    assert spaced[0]["problem"]["errors"][0]["path"] == "/idempotency_key"
    twice = await bulk(api, [{"op": "create", "body": note(i), "idempotency_key": "same"} for i in (2, 3)])
    assert [r["status"] for r in twice] == [201, 422]
    assert twice[1]["problem"]["errors"] == [{"path": "/idempotency_key", "message": "used twice in one request"}]
    assert sorted(d["title"] for d in await stored_docs(db)) == ["bulk 2"]
