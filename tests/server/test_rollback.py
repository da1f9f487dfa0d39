"""Rollback, undelete and un-soft-delete by a member of the database (issue 22, row 1).

CouchDB's winner is the highest *live* leaf. A member (not only an administrator) can store
an old signed body as a new branch at the generation it was signed for (``_bulk_docs`` with
``new_edits: false``) and turn the newer leaves into tombstones (``DELETE``): the old body is
the winner again and its signature is valid. The trace is a deleted leaf above the live
winner that the service did not sign (docs/consistency.md §3). Every path that returns or
builds on the document must see it: a read, the read before a write, ``/verify``, a query
page, the change feed, ``data-service verify`` and ``reconcile``. A deletion the service
made and signed is no tampering: an old body put back under it stays deleted.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from support import ROOT, install_design_docs, run_command, unique_name, until

from data_service.couchdb import CouchDB, Database
from data_service.couchdb.transport import path

SAMPLE = ROOT / "models" / "sample.yaml"
NO_CACHE = {"Cache-Control": "no-cache"}  # asked right after the tampering: past the read cache
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
async def installed(db, couch):
    # pouchdb-server rewrites the history of new_edits:false writes when a validate_doc_update is
    # installed (README: dev-server gaps); on CouchDB the guard stays, and lets the member through
    await install_design_docs(db, guard=(await couch.server_info()).kind == "couchdb")
    return db


@pytest.fixture
async def attacker(couch, installed, couchdb_url):
    """The database as its member sees it: a user with no role but membership (on the dev
    server, whose ``_users`` differs, the admin: the operations are the same)."""
    if (await couch.server_info()).kind != "couchdb":
        yield installed
        return
    name, password = unique_name("mallory"), uuid.uuid4().hex
    user = {"_id": f"org.couchdb.user:{name}", "name": name, "password": password, "roles": [], "type": "user"}
    await couch.request("PUT", path("_users", user["_id"]), json=user)
    security = await installed.security()
    members = security.setdefault("members", {})
    members["names"] = [*members.get("names", []), name]
    await installed.put_security(security)
    host = couchdb_url.split("@", 1)[-1].split("://", 1)[-1]
    async with CouchDB(f"http://{name}:{password}@{host}") as member:
        yield member.database(installed.name)


async def roll_back(db: Database, docid: str, old: dict) -> str:
    """Put ``old`` (a revision as it was read then) back as the winner the way a member
    can: a new branch at its generation under its real parent, then every newer live
    leaf deleted. The new branch's revision."""
    every = await db.couch.json("GET", path(db.name, docid), params={"open_revs": "all", "revs": "true"})
    leaves = [entry["ok"] for entry in every]
    history = max(leaves, key=lambda leaf: leaf["_revisions"]["start"])["_revisions"]
    generation = int(old["_rev"].split("-")[0])
    fake = uuid.uuid4().hex
    ancestors = history["ids"][history["start"] - generation + 1 :]
    branch = {**old, "_rev": f"{generation}-{fake}", "_revisions": {"start": generation, "ids": [fake, *ancestors]}}
    assert await db.bulk_docs([branch], new_edits=False) == []
    for entry in await db.open_revs(docid):
        leaf = entry.get("ok") or {}
        if not leaf.get("_deleted") and int(leaf["_rev"].split("-")[0]) > generation:
            await db.delete(docid, leaf["_rev"])
    await until(lambda: served_everywhere(db, docid, branch["_rev"]), "every copy serves the old body")
    return branch["_rev"]


async def served_everywhere(db: Database, docid: str, rev: str) -> bool:
    """Whether CouchDB serves ``rev`` from every copy: on a cluster the attacker's writes
    reach the third copy by internal replication, and a read that asks every copy answers
    the highest winner among them (a single node: its one copy)."""
    every = await db.copies()
    answer = await db.couch.json("GET", path(db.name, docid), params={"r": every} if every else None)
    return answer["_rev"] == rev


async def integrity_violation(api, method: str, url: str, **kwargs) -> None:
    reply = await api.request(method, url, **kwargs)
    assert reply.status == 500 and reply.body["code"] == "integrity_violation", (method, url, reply.status)


async def test_a_password_change_rolled_back_by_a_member_is_detected_everywhere(api, installed, attacker, config):
    user = (
        await api.request(
            "POST", "/v1/user", json={"email": "ann@example.com", "name": "Ann", "password": "first-pw-1"}
        )
    ).body
    url = f"/v1/user/{user['id']}"
    first = await installed.get(user["id"])
    changed = await api.request("PATCH", url, json={"password": "second-pw-2"}, headers=MERGE_PATCH)
    assert changed.status == 200
    await roll_back(attacker, user["id"], first)

    await integrity_violation(api, "GET", url, headers=NO_CACHE)
    # the leaked first password must not verify again
    await integrity_violation(api, "POST", f"{url}/verify", json={"password": "first-pw-1"})
    # nor can anyone write on the rolled-back body
    await integrity_violation(api, "PATCH", url, json={"name": "Ann B"}, headers=MERGE_PATCH)
    page = await api.request("GET", "/v1/user?limit=100", headers=NO_CACHE)
    assert {"id": user["id"], "code": "integrity_violation"} in page.body["omitted"]
    assert user["id"] not in [item["id"] for item in page.body["items"]]
    feed = await api.request("GET", "/v1/user/_changes")
    assert {"id": user["id"], "code": "integrity_violation"} in [
        {k: v for k, v in item.items() if k != "position"} for item in feed.body.get("omitted", [])
    ]
    assert user["id"] not in [item["id"] for item in feed.body["results"]]

    verify = await asyncio.to_thread(run_command, config, "verify")
    assert verify.returncode == 1 and f"FAILED {user['id']}: rolled back" in verify.stdout, verify.stdout
    if (await installed.couch.server_info()).supports_deleted_conflicts:  # the dev server's views cannot see it
        reconcile = await asyncio.to_thread(run_command, config, "reconcile", f"--models={SAMPLE}")
        assert reconcile.returncode == 1 and f"TAMPERED {user['id']}" in reconcile.stdout, reconcile.stdout
    assert (await installed.get(user["id"]))["_rev"] == (await attacker.get(user["id"]))["_rev"]  # nothing rewritten


async def test_an_undone_soft_delete_is_detected(api, installed, attacker):
    user = (await api.request("POST", "/v1/user", json={"email": "bo@example.com", "name": "Bo"})).body
    url = f"/v1/user/{user['id']}"
    live = await installed.get(user["id"])
    assert (await api.request("DELETE", url, headers={"If-Match": f'"{live["_rev"]}"'})).status == 204
    await roll_back(attacker, user["id"], live)
    await integrity_violation(api, "GET", url, headers=NO_CACHE)


async def test_a_hard_delete_stays_deleted_under_an_old_body_put_back(api, installed, attacker):
    note = (await api.request("POST", "/v1/note", json={"title": "gone for good"})).body
    url = f"/v1/note/{note['id']}"
    live = await installed.get(note["id"])
    assert (await api.request("DELETE", url, headers={"If-Match": f'"{live["_rev"]}"'})).status == 204
    tombstone = [e["ok"] for e in await installed.open_revs(note["id"]) if e["ok"].get("_deleted")]
    assert tombstone and tombstone[0]["meta"]["removed"] == "delete" and "sig" in tombstone[0]  # signed
    await roll_back(attacker, note["id"], live)

    assert (await api.request("GET", url, headers=NO_CACHE)).status == 404  # the later event, the delete, wins
    page = await api.request("GET", "/v1/note?limit=100", headers=NO_CACHE)
    assert note["id"] not in [item["id"] for item in page.body["items"]] and not page.body.get("omitted")
    live_leaves = [e["ok"] for e in await installed.open_revs(note["id"]) if not e["ok"].get("_deleted")]
    assert live_leaves == []  # the read settled it: the body put back was removed (a signed tombstone)


async def test_a_deletion_made_outside_the_service_above_a_live_leaf_is_tampering(api, installed, attacker):
    """The bare shape, without an old body: a second branch is deleted by a member."""
    note = (await api.request("POST", "/v1/note", json={"title": "one"})).body
    url = f"/v1/note/{note['id']}"
    first = await installed.get(note["id"])
    assert (
        await api.request("PUT", url, json={"title": "two"}, headers={"If-Match": f'"{first["_rev"]}"'})
    ).status == 200
    await roll_back(attacker, note["id"], first)
    await integrity_violation(api, "GET", url, headers=NO_CACHE)
    await integrity_violation(api, "PUT", url, json={"title": "three"}, headers={"If-Match": "*"})
