"""Integrity against a database administrator. Every test writes to CouchDB directly, as
someone with write access to the database can, and the sidecar must answer
``integrity_violation`` (logged by id, counted): never the old content, never a quiet
404, never a 500 ``internal_error``. Rolled-back, undeleted and resurrected documents,
changed markers, poisoned documents, documents copied between databases, and version 1
documents (readable until ``--refuse-v1``): on every path, HTTP and commands. The store's
own decisions for these shapes (and an old leaf injected into a merge) are the store
contract's (tests/contracts/store_documents.py, store_reconciler.py)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

import orjson
import pytest
import v1
from support import ROOT, install_design_docs, run_command, running_sidecar, spec_api, unique_name
from support.documents import ALICE, create_user
from support.metrics import metric_of

from data_service.couchdb import Request
from data_service.couchdb.transport import path
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import load_models
from data_service.protection import Keyring

SAMPLE = ROOT / "models" / "sample.yaml"
USER = load_models(SAMPLE).get("user")


async def violation(api, method: str, url: str, **kwargs) -> dict:
    """Asked right after the tampering: past the read cache, which may hold the verified
    version until the change feed reports the change (test_cache.py shows it evicted)."""
    kwargs["headers"] = {"Cache-Control": "no-cache", **kwargs.get("headers", {})}
    reply = await api.request(method, url, **kwargs)
    assert reply.status == 500, (method, url, reply.status, reply.body)
    assert reply.body["code"] == "integrity_violation" and reply.body["retryable"] is False
    return reply.body


async def omitted_from_listing(api, type_name: str, docid: str, query: str = "") -> None:
    """Like ``violation``: the page's documents from CouchDB, past the read cache."""
    reply = await api.request("GET", f"/v1/{type_name}?limit=100{query}", headers={"Cache-Control": "no-cache"})
    assert reply.status == 200, reply.body
    assert {"id": docid, "code": "integrity_violation"} in reply.body["omitted"]
    assert docid not in [item["id"] for item in reply.body["items"]]


async def integrity_violations(api) -> float:
    return await metric_of(api.session, api.base, "data_service_integrity_violations_total")


@pytest.fixture
async def installed(db):
    await install_design_docs(db)
    return db


# --- a signed place in history ------------------------------------------------------


async def test_an_older_body_written_over_the_current_revision(api, installed, config, caplog):
    db = installed
    user = await create_user(api, password="first-pass-1")
    old = await db.get(user["id"])
    patch = {"password": "second-pass-2", "name": "Renamed"}
    url = f"/v1/user/{user['id']}"
    reply = await api.request("PATCH", url, json=patch, headers={"Content-Type": "application/merge-patch+json"})
    assert reply.status == 200
    current = await db.get(user["id"])
    await db.put({**old, "_rev": current["_rev"]})  # CouchDB accepts the old signed body as generation 3

    caplog.set_level(logging.WARNING, logger="data_service.store")
    body = await violation(api, "GET", url)
    assert "Ada" not in orjson.dumps(body).decode()
    await violation(api, "POST", f"{url}/verify", json={"password": "first-pass-1"})  # the old password: no
    await violation(api, "PATCH", url, json={"age": 1}, headers={"Content-Type": "application/merge-patch+json"})
    await omitted_from_listing(api, "user", user["id"])
    assert f"document {user['id']}: signed for revision generation 1" in caplog.text
    assert await integrity_violations(api) == 4.0

    result = run_command(config, "verify")
    assert result.returncode == 1 and f"FAILED {user['id']}: signed for revision generation 1" in result.stdout


async def test_an_undone_soft_delete(api, installed):
    db = installed
    user = await create_user(api)  # users delete softly
    url = f"/v1/user/{user['id']}"
    before = await db.get(user["id"])
    assert (await api.request("DELETE", url, headers={"If-Match": f'"{before["_rev"]}"'})).status == 204
    assert (await api.request("GET", url)).status == 404
    deleted = await db.get(user["id"])
    assert deleted["meta"]["deleted_at"]
    await db.put({**before, "_rev": deleted["_rev"]})  # the body from before the delete, back on top
    await violation(api, "GET", url)
    await omitted_from_listing(api, "user", user["id"])


async def test_a_resurrected_hard_delete(api, installed):
    db = installed
    note = await api.request("POST", "/v1/note", json={"title": "gone for good"})
    url = f"/v1/note/{note.body['id']}"
    before = await db.get(note.body["id"])
    assert (await api.request("DELETE", url, headers={"If-Match": note.etag})).status == 204
    assert (await api.request("GET", url)).status == 404
    # a PUT without _rev on a deleted id: CouchDB continues the tombstone's branch (generation 3)
    await db.put({k: v for k, v in before.items() if k != "_rev"})
    assert (await db.get(note.body["id"]))["_rev"].startswith("3-")
    await violation(api, "GET", url)
    await omitted_from_listing(api, "note", note.body["id"])


async def test_changed_type_version_or_deleted_marker_is_a_violation_never_a_404(api, installed, caplog):
    db = installed
    users = [await create_user(api, name=f"u{i}") for i in range(3)]
    note = await api.request("POST", "/v1/note", json={"title": "a note"})
    hidden, retyped, reversioned = [await db.get(u["id"]) for u in users]
    await db.put({**hidden, "meta": {**hidden["meta"], "deleted_at": hidden["meta"]["updated_at"]}})
    await db.put({**retyped, "type": "note_v1.0"})
    await db.put({**reversioned, "type": "user_v1.3"})

    caplog.set_level(logging.WARNING, logger="data_service.store")
    for user in users:
        await violation(api, "GET", f"/v1/user/{user['id']}")
    await violation(api, "GET", f"/v1/note/{users[1]['id']}")  # under the type it now claims, too
    await omitted_from_listing(api, "user", users[0]["id"])  # hidden by the marker: still named
    await omitted_from_listing(api, "user", users[2]["id"])
    await omitted_from_listing(api, "note", users[1]["id"])
    assert all(f"document {u['id']}" in caplog.text for u in users)
    # bulk writes and the change feed verify first too: the retyped user does not vanish from the user feed
    items = [
        {"op": "patch", "id": users[0]["id"], "patch": {"age": 1}},
        {"op": "delete", "id": users[2]["id"], "if_match": "*"},
    ]
    reply = await api.request("POST", "/v1/user/_bulk", json={"items": items})
    assert [r["problem"]["code"] for r in reply.body["results"]] == ["integrity_violation"] * 2
    feed = await api.request("GET", "/v1/user/_changes")
    assert {item["id"] for item in feed.body["omitted"]} == {u["id"] for u in users}
    assert users[1]["id"] not in [item["id"] for item in feed.body["results"]]
    # a valid document of another type stays a plain 404
    other = await api.request("GET", f"/v1/user/{note.body['id']}")
    assert other.status == 404 and other.body["code"] == "not_found"


async def test_a_document_copied_to_another_database(couch, api, installed, config, http):
    user = await create_user(api)
    stored = await installed.get(user["id"])
    other = couch.database(unique_name("copy"))
    await other.create()
    try:
        await install_design_docs(other)
        await other.put({k: v for k, v in stored.items() if k != "_rev"})  # same id, same keysets
        async with running_sidecar(replace(config, database=other.name)) as base:
            api_b = await spec_api(http, base)
            await violation(api_b, "GET", f"/v1/user/{user['id']}")
        # replicas of one deployment name it explicitly, and then read each other's documents
        shared = replace(config, database=other.name, deployment_id=config.database)
        async with running_sidecar(shared) as base:
            reply = await (await spec_api(http, base)).request("GET", f"/v1/user/{user['id']}")
            assert reply.status == 200 and reply.body["ssn"] == ALICE["ssn"]
    finally:
        await other.drop()


def unsigned(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("_rev", "sig")}


# --- poisoned documents ------------------------------------------------------------------


async def put_raw(couch, db, doc: dict, deep: int) -> None:
    """PUT ``doc`` with its ``address`` nested ``deep`` levels (no JSON encoder goes that deep)."""
    text = orjson.dumps({**doc, "address": "DEEP"}).decode()
    nested = '{"a":' * deep + "1" + "}" * deep
    body = text.replace('"DEEP"', nested).encode()
    response = await couch.transport.handle(Request("PUT", path(db.name, doc["_id"]), (), body))
    assert response.status in (201, 202), response.body


@pytest.mark.parametrize(
    ("depth", "why"),
    [(300, "no canonical form: nested more than 250 levels"), (1100, "cannot be parsed")],
    ids=["deeper than the canonical form", "deeper than the JSON parser"],
)
async def test_a_poisoned_document_is_named_never_an_internal_error(couch, api, installed, config, depth, why):
    db = installed
    users = [await create_user(api, name=f"p{i}") for i in range(3)]
    victim = users[1]["id"]
    await put_raw(couch, db, await db.get(victim), depth)

    body = await violation(api, "GET", f"/v1/user/{victim}")
    assert body["detail"] == f"document {victim} failed its signature check"
    await violation(api, "PUT", f"/v1/user/{victim}", json=ALICE, headers={"If-Match": "*"})
    reply = await api.request("GET", "/v1/user?limit=100")
    assert reply.status == 200 and reply.body["omitted"] == [{"id": victim, "code": "integrity_violation"}]
    assert sorted(item["id"] for item in reply.body["items"]) == sorted(u["id"] for u in users if u["id"] != victim)
    feed = await api.request("GET", "/v1/user/_changes")
    assert feed.status == 200 and [item["id"] for item in feed.body["omitted"]] == [victim]
    assert len(feed.body["results"]) == 2
    items = [{"op": "patch", "id": victim, "patch": {"age": 3}}, {"op": "patch", "id": users[0]["id"], "patch": {}}]
    batch = await api.request("POST", "/v1/user/_bulk", json={"items": items})
    assert [r["status"] for r in batch.body["results"]] == [500, 200]
    assert batch.body["results"][0]["problem"]["code"] == "integrity_violation"

    verified = run_command(config, "verify")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert f"FAILED {victim}: " in verified.stdout and why in verified.stdout
    assert "3 documents checked, 1 failed" in verified.stdout
    reencrypted = run_command(config, "reencrypt", f"--models={SAMPLE}")
    assert reencrypted.returncode == 1 and f"SKIPPED {victim}: " in reencrypted.stdout
    assert "3 checked, 0 rewritten, 2 already current, 1 skipped" in reencrypted.stdout


async def test_a_body_too_deep_to_sign_is_refused_as_bad_input(api):
    """What the service could not sign it never stores: a 422, not a 500."""
    text = orjson.dumps({**ALICE, "address": "DEEP"}).decode()
    deep = text.replace('"DEEP"', '{"street":' * 300 + '"x"' + "}" * 300).encode()  # beyond orjson's encoder
    reply = await api.request("POST", "/v1/user", data=deep, headers={"Content-Type": "application/json"})
    assert reply.status == 422 and reply.body["code"] == "nested_too_deep"  # refused at the door (64 levels)
    (error,) = reply.body["errors"]
    assert error["path"].startswith("/address/street/") and error["message"] == "nested more than 64 levels deep"


# --- version 1 documents ------------------------------------------------------------------


async def test_version_1_documents_keep_working_until_reencrypt_upgrades_them(installed, config, http):
    db = installed
    ring = Keyring(KeysDir(config.keys_dir), config.database)
    body = {k: v for k, v in ALICE.items() if k != "password"}
    doc = Lifecycle(ring, "w-old").create(USER, uuid.uuid4().hex, body, {}, "2026-01-01T00:00:00.000Z").doc
    doc["ssn"] = v1.encrypted(ring, USER.slot("ssn", doc["_id"]), ALICE["ssn"])
    doc["country"] = v1.deterministic(ring, USER.slot("country", doc["_id"]), ALICE["country"])
    old = v1.signed(ring, {k: v for k, v in doc.items() if k != "sig"})
    await db.put(old)
    url = f"/v1/user/{old['_id']}"
    strict = replace(config, accept_v1=False)

    async with running_sidecar(config) as base:
        api = await spec_api(http, base)
        reply = await api.request("GET", url)
        assert reply.status == 200 and reply.body["ssn"] == ALICE["ssn"] and reply.body["country"] == "GB"
        found = await api.request("GET", "/v1/user?country=GB")
        assert [item["id"] for item in found.body["items"]] == [old["_id"]]  # looked up in its v1 form too
    async with running_sidecar(strict) as base:
        await violation(await spec_api(http, base), "GET", url)

    result = run_command(config, "reencrypt", f"--models={SAMPLE}")
    assert result.returncode == 0 and "1 checked, 1 rewritten" in result.stdout, result.stdout + result.stderr
    upgraded = await db.get(old["_id"])
    assert upgraded["sig"]["v"] == 2 and upgraded["sig"]["gen"] == 2 and upgraded["_rev"].startswith("2-")
    assert upgraded["ssn"].startswith("aead2:") and upgraded["country"].startswith("daead2:")
    assert upgraded["meta"] == old["meta"] and upgraded["email"] == old["email"]

    async with running_sidecar(strict) as base:
        api = await spec_api(http, base)
        reply = await api.request("GET", url)
        assert reply.status == 200 and reply.body["ssn"] == ALICE["ssn"]
        found = await api.request("GET", "/v1/user?country=GB")
        assert [item["id"] for item in found.body["items"]] == [old["_id"]]
        # the v1 body put back: what --refuse-v1 closes (a sidecar accepting v1 would serve it)
        await db.put({**old, "_rev": upgraded["_rev"]})
        await violation(api, "GET", url)
    async with running_sidecar(config) as base:
        assert (await (await spec_api(http, base)).request("GET", url)).status == 200
