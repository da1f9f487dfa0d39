"""The /v1 document API over HTTP against the running sidecar and a real CouchDB.
Every response is checked against the OpenAPI spec the sidecar serves (see ``api``)."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from faults import FaultProxy
from support import running_sidecar, spec_api, until
from support.documents import stored_docs
from support.metrics import cache_gauge

USER = {
    "email": "ada@example.com",
    "name": "Ada",
    "password": "correct horse",
    "age": 36,
    "tags": ["math"],
    "address": {"street": "1 Analytical Way", "city": "London", "zip": "N1"},
}


async def test_create_read_replace_delete(api, db):
    created = await api.request("POST", "/v1/note", json={"title": "hello", "body": "first"})
    assert created.status == 201
    note = created.body
    assert note["title"] == "hello" and note["meta"]["type"] == "note" and note["meta"]["version"] == "1.0"
    assert created.headers["Location"] == f"/v1/note/{note['id']}"
    assert created.etag.startswith('"1-')

    (stored,) = await stored_docs(db)
    assert stored["_id"] == note["id"] and stored["type"] == "note_v1.0" and stored["_rev"] == created.etag[1:-1]

    got = await api.request("GET", f"/v1/note/{note['id']}")
    assert got.status == 200 and got.body == note and got.etag == created.etag
    unchanged = await api.request("GET", f"/v1/note/{note['id']}", headers={"If-None-Match": created.etag})
    assert unchanged.status == 304 and unchanged.body is None and unchanged.etag == created.etag

    no_precondition = await api.request("PUT", f"/v1/note/{note['id']}", json={"title": "x"})
    assert no_precondition.status == 428 and no_precondition.body["code"] == "precondition_required"

    replaced = await api.request(
        "PUT", f"/v1/note/{note['id']}", json={"title": "replaced"}, headers={"If-Match": created.etag}
    )
    assert replaced.status == 200 and replaced.body["title"] == "replaced" and "body" not in replaced.body
    assert replaced.etag.startswith('"2-')
    assert replaced.body["meta"]["created_at"] == note["meta"]["created_at"]

    stale = await api.request(
        "PUT", f"/v1/note/{note['id']}", json={"title": "lost"}, headers={"If-Match": created.etag}
    )
    assert stale.status == 412 and stale.body["code"] == "stale_revision" and stale.body["retryable"] is True
    assert stale.body["current"] == replaced.body and stale.etag == replaced.etag

    stale_delete = await api.request("DELETE", f"/v1/note/{note['id']}", headers={"If-Match": created.etag})
    assert stale_delete.status == 412 and stale_delete.body["current"]["title"] == "replaced"
    assert (await api.request("DELETE", f"/v1/note/{note['id']}")).status == 428

    deleted = await api.request("DELETE", f"/v1/note/{note['id']}", headers={"If-Match": replaced.etag})
    assert deleted.status == 204 and deleted.body is None
    assert (await api.request("GET", f"/v1/note/{note['id']}")).status == 404
    assert await stored_docs(db) == []  # "note" deletes hard


async def test_soft_delete_keeps_the_document(api, db):
    user = await api.request("POST", "/v1/user", json=USER)
    deleted = await api.request("DELETE", f"/v1/user/{user.body['id']}", headers={"If-Match": user.etag})
    assert deleted.status == 204
    missing = await api.request("GET", f"/v1/user/{user.body['id']}")
    assert missing.status == 404 and missing.body["code"] == "not_found"
    (stored,) = await stored_docs(db)
    assert stored["_id"] == user.body["id"] and stored["meta"]["deleted_at"]
    again = await api.request("PUT", f"/v1/user/{user.body['id']}", json=USER, headers={"If-Match": "*"})
    assert again.status == 404


async def test_not_found_cases(api):
    note = (await api.request("POST", "/v1/note", json={"title": "t"})).body
    assert (await api.request("GET", "/v1/note/0123456789abcdef")).status == 404
    other_type = await api.request("GET", f"/v1/user/{note['id']}")
    assert other_type.status == 404 and other_type.body["code"] == "not_found"
    unknown = await api.request("GET", f"/v1/gadget/{note['id']}")
    assert unknown.status == 404 and unknown.body["code"] == "unknown_type"


async def test_patch_with_and_without_if_match(api):
    note = await api.request("POST", "/v1/note", json={"title": "t", "body": "b", "attributes": {"a": "1"}})
    url = f"/v1/note/{note.body['id']}"
    merge = {"Content-Type": "application/merge-patch+json"}
    patched = await api.request(
        "PATCH", url, data=b'{"body": null, "attributes": {"b": "2"}}', headers={**merge, "If-Match": note.etag}
    )
    assert patched.status == 200
    assert "body" not in patched.body and patched.body["attributes"] == {"a": "1", "b": "2"}
    stale = await api.request("PATCH", url, data=b'{"title": "x"}', headers={**merge, "If-Match": note.etag})
    assert stale.status == 412 and stale.body["current"]["attributes"] == {"a": "1", "b": "2"}
    free = await api.request("PATCH", url, data=b'{"title": "free"}', headers=merge)
    assert free.status == 200 and free.body["title"] == "free" and free.etag.startswith('"3-')
    invalid = await api.request("PATCH", url, data=b'{"counter": -1}', headers=merge)
    assert invalid.status == 422 and invalid.body["errors"][0]["path"] == "/counter"
    wrong_media = await api.request("PATCH", url, json={"title": "y"})
    assert wrong_media.status == 415


BAD_INPUTS = [
    # (name, method, path, body, headers, status, code)
    ("invalid JSON", "POST", "/v1/note", b'{"title": ', {"Content-Type": "application/json"}, 400, "invalid_json"),
    (
        "wrong JSON type",
        "POST",
        "/v1/note",
        b'{"title": 42}',
        {"Content-Type": "application/json"},
        422,
        "validation_failed",
    ),
    ("not an object", "POST", "/v1/note", b'["title"]', {"Content-Type": "application/json"}, 422, "validation_failed"),
    (
        "unknown property",
        "POST",
        "/v1/note",
        b'{"title": "t", "colour": "red"}',
        {"Content-Type": "application/json"},
        422,
        "validation_failed",
    ),
    (
        "missing required",
        "POST",
        "/v1/note",
        b'{"body": "b"}',
        {"Content-Type": "application/json"},
        422,
        "validation_failed",
    ),
    (
        "reserved name",
        "POST",
        "/v1/note",
        b'{"title": "t", "_id": "mine"}',
        {"Content-Type": "application/json"},
        422,
        "reserved_property",
    ),
    (
        "reserved meta",
        "POST",
        "/v1/note",
        b'{"title": "t", "meta": {}}',
        {"Content-Type": "application/json"},
        422,
        "reserved_property",
    ),
    (
        "oversized body",
        "POST",
        "/v1/note",
        b'{"title": "' + b"x" * 2_000_000 + b'"}',
        {"Content-Type": "application/json"},
        413,
        "payload_too_large",
    ),
    (
        "wrong content type",
        "POST",
        "/v1/note",
        b"title=t",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    ("no content type", "POST", "/v1/note", b'{"title": "t"}', {}, 415, "unsupported_media_type"),
    (
        "unknown type",
        "POST",
        "/v1/gadget",
        b'{"title": "t"}',
        {"Content-Type": "application/json"},
        404,
        "unknown_type",
    ),
    (
        "bad id",
        "PUT",
        "/v1/note/_all_docs",
        b'{"title": "t"}',
        {"Content-Type": "application/json", "If-Match": "*"},
        400,
        "invalid_id",
    ),
    (
        "bad idempotency key",
        "POST",
        "/v1/note",
        b'{"title": "t"}',
        {"Content-Type": "application/json", "Idempotency-Key": "has space"},
        400,
        "bad_request",
    ),
    ("method not allowed", "DELETE", "/v1/note", None, {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    "name, method, path, body, headers, status, code", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS]
)
async def test_bad_input_is_a_clear_4xx_and_stores_nothing(api, db, name, method, path, body, headers, status, code):
    reply = await api.request(method, path, data=body, headers=headers)
    assert reply.status == status, reply.body
    assert reply.body["code"] == code and reply.body["retryable"] is False and reply.body["status"] == status
    if status == 405:
        assert reply.headers["Allow"] == "GET, POST"
    if status == 422 and code != "idempotency_key_mismatch":
        assert reply.body["errors"] and all("path" in e and "message" in e for e in reply.body["errors"])
    assert await stored_docs(db) == []
    assert (await db.info())["doc_count"] == 0


async def test_protected_values_never_echoed_in_errors(api):
    reply = await api.request("POST", "/v1/user", json={**USER, "password": "Zq7#x"})
    assert reply.status == 422 and reply.body["errors"][0]["path"] == "/password"
    assert "Zq7#x" not in orjson.dumps(reply.body).decode()


async def test_types_and_openapi(api):
    types = await api.request("GET", "/v1/_types")
    by_name = {t["name"]: t for t in types.body["types"]}
    assert set(by_name) == {"user", "note", "event"}
    assert by_name["user"]["delete"] == "soft" and by_name["event"]["version"] == "2.1"
    assert by_name["note"]["conflict"] == "latest"
    assert ["owner", "created_at"] in by_name["event"]["indexes"] and [] in by_name["event"]["indexes"]
    assert by_name["user"]["properties"]["password"]["protection"] == "bcrypt"
    assert by_name["note"]["schema"]["additionalProperties"] is False
    spec = await api.request("GET", "/openapi.json")
    assert spec.body["openapi"].startswith("3.1")
    assert "note" in spec.body["components"]["schemas"] and "/v1/note/{id}" in spec.body["paths"]


async def test_couchdb_outage_is_503_and_the_sidecar_recovers(config, http, db):
    async with (
        FaultProxy.to(config.couchdb_url) as proxy,
        running_sidecar(replace(config, couchdb_url=proxy.url)) as base,
    ):
        api = await spec_api(http, base)
        note = await api.request("POST", "/v1/note", json={"title": "before"})
        assert note.status == 201
        await proxy.down()

        async def bypassed() -> bool:  # the cache's feed noticed: nothing is served from memory
            return await cache_gauge(http, base, "live") == 0.0

        await until(bypassed, "the read cache is bypassed")
        for method, path, body in [
            ("GET", f"/v1/note/{note.body['id']}", None),
            ("POST", "/v1/note", {"title": "during"}),
            ("GET", "/_health?quick=false", None),
        ]:
            down = await api.request(method, path, json=body)
            assert down.status == 503 and down.headers["Retry-After"] == "1"
            assert down.body["code"] == "couchdb_unavailable" and down.body["retryable"] is True
        await proxy.up()
        back = await api.request("GET", f"/v1/note/{note.body['id']}")
        assert back.status == 200 and back.body["title"] == "before"
        assert (await api.request("POST", "/v1/note", json={"title": "after"})).status == 201
    assert sorted(d["title"] for d in await stored_docs(db)) == ["after", "before"]


async def test_integral_float_survives_the_round_trip(api):
    """2.0 is stored; pouchdb-server answers it as 2: the signature must still verify."""
    event = {"owner": "o", "kind": "login", "created_at": "2026-01-01T00:00:00Z", "payload": {"ratio": 2.0}}
    created = await api.request(
        "POST", "/v1/event", data=orjson.dumps(event), headers={"Content-Type": "application/json"}
    )
    assert created.status == 201
    got = await api.request("GET", f"/v1/event/{created.body['id']}")
    assert got.status == 200 and got.body["payload"]["ratio"] == 2
