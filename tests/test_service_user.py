"""Least privilege: ``install --service-user`` creates a CouchDB member user, adds it to the
database's ``_security`` (keeping who was there) and ``serve`` runs as it, no admin needed.
On Apache CouchDB the member's limits are checked too (pouchdb-server enforces less)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support import ROOT, run_command, running_sidecar, unique_name, until

from data_service.config import ConfigError
from data_service.couchdb import CouchDB, CouchDBError, Unauthorized
from data_service.couchdb.client import path
from data_service.service_user import PASSWORD_ENV, ServiceUser

SAMPLE = ROOT / "models" / "sample.yaml"
PASSWORD = "member-Passw0rd-long"


def test_service_user_from_flags(tmp_path):
    assert ServiceUser.from_args({}) is None
    file = tmp_path / "pw"
    file.write_text(PASSWORD + "\n")
    user = ServiceUser.from_args({"--service-user": "svc", "--service-user-password-file": str(file)})
    assert user == ServiceUser("svc", PASSWORD) and PASSWORD not in repr(user)
    assert ServiceUser.from_args({"--service-user": "svc"}, {PASSWORD_ENV: PASSWORD}) == user
    for args, env in (
        ({"--service-user": "svc"}, {}),  # no password
        ({"--service-user": "svc"}, {PASSWORD_ENV: "short"}),
        ({"--service-user": "_admin"}, {PASSWORD_ENV: PASSWORD}),
        ({"--service-user": "svc", "--service-user-password-file": str(tmp_path / "missing")}, {}),
    ):
        with pytest.raises(ConfigError):
            ServiceUser.from_args(args, env)


@pytest.fixture
async def fresh(couch, config):
    name = unique_name("member")
    yield replace(config, database=name)
    await couch.database(name).drop(missing_ok=True)


@pytest.fixture
async def member(couch):
    name = unique_name("svc")
    yield name
    try:
        doc = await couch.json("GET", path("_users", f"org.couchdb.user:{name}"))
        await couch.request("DELETE", path("_users", doc["_id"]), params={"rev": doc["_rev"]})
    except CouchDBError:
        pass


def install(config, name: str, password_file) -> str:
    result = run_command(
        config,
        "install",
        f"--models={SAMPLE}",
        f"--service-user={name}",
        f"--service-user-password-file={password_file}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    return result.stdout


async def security_listing(db, *names: str) -> dict:
    """``_security`` once it lists ``names`` as members: on a cluster each shard copy takes a
    ``_security`` write in its own time, and a read right after it may show the one before."""

    async def listed() -> dict | None:
        security = await db.security()
        return security if set(names) <= set(security.get("members", {}).get("names", [])) else None

    return await until(listed, f"_security lists {names}")


async def test_install_creates_a_member_and_serve_runs_as_it(couch, fresh, member, tmp_path, http):
    db = couch.database(fresh.database)
    await db.create()
    await db.put_security({"members": {"names": ["alice"], "roles": ["readers"]}, "admins": {"names": ["bob"]}})
    await security_listing(db, "alice")  # what install finds and keeps
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD)

    first = install(fresh, member, password_file)
    assert f"create CouchDB user {member} (no roles)" in first
    user = await couch.json("GET", path("_users", f"org.couchdb.user:{member}"))
    assert user["name"] == member and user["roles"] == [] and "password" not in user  # the server hashed it
    security = await security_listing(db, member, "alice")
    assert "readers" in security["members"]["roles"] and "data-service" in security["members"]["roles"]
    assert security["admins"]["names"] == ["bob"] and security["admins"]["roles"] == ["_admin"]
    again = install(fresh, member, password_file)
    assert f"unchanged CouchDB user {member}" in again and "unchanged _security" in again

    # serve as the member: every kind of request it makes works without admin rights
    as_member = replace(fresh, couchdb_user=member, couchdb_password=PASSWORD)
    async with running_sidecar(as_member) as base:
        async with http.get(f"{base}/_health?quick=false") as resp:
            assert resp.status == 200, await resp.text()
        event = {"owner": member, "kind": "created", "created_at": "2026-01-01T00:00:00Z"}
        async with http.post(f"{base}/v1/event", json=event) as resp:
            assert resp.status == 201, await resp.text()
            docid, etag = (await resp.json())["id"], resp.headers["ETag"]

        async def listed() -> bool:  # a view reads one copy per shard range: on a cluster, soon
            async with http.get(f"{base}/v1/event?owner={member}") as resp:
                assert resp.status == 200
                return [item["id"] for item in (await resp.json())["items"]] == [docid]

        await until(listed, "the query lists the event")
        async with http.delete(f"{base}/v1/event/{docid}", headers={"If-Match": etag}) as resp:
            assert resp.status == 204
        async with http.get(f"{base}/_metrics/database") as resp:
            assert resp.status == 200

    # a new password: the installer sets it, and the old one no longer logs in
    password_file.write_text(PASSWORD + "-2")
    assert f"set the password of CouchDB user {member}" in install(fresh, member, password_file)
    async with CouchDB(couch.url, auth=(member, PASSWORD + "-2")) as renewed:

        async def logs_in() -> bool:  # each node's authentication cache follows _users in its own time
            try:
                return (await renewed.json("GET", "/_session"))["userCtx"]["name"] == member
            except Unauthorized:
                return False

        await until(logs_in, "the new password logs in")

    if (await couch.server_info()).kind != "couchdb":
        return  # pouchdb-server does not enforce what follows
    async with CouchDB(couch.url, auth=(member, PASSWORD + "-2")) as as_svc:
        for method, target, body in (
            ("PUT", path(fresh.database, "_design", "mine"), {"views": {}}),  # design docs: admins only
            ("GET", path("_users", f"org.couchdb.user:{member}-other"), None),
            ("PUT", "/_node/_local/_config/uuids/algorithm", "random"),
            ("PUT", path(unique_name("other")), None),
        ):
            with pytest.raises(CouchDBError) as refused:
                await as_svc.request(method, target, json=body)
            assert refused.value.status in (401, 403), (method, target)
        # CouchDB 3.5 refuses a member's _security write on every shard but answers
        # 500 no_majority (recorded here): it fails, and nothing changes
        with pytest.raises(CouchDBError):
            await as_svc.request("PUT", path(fresh.database, "_security"), json={"members": {"names": [member]}})
        assert await db.security() == security
    async with CouchDB(couch.url) as anonymous:
        with pytest.raises(CouchDBError) as refused:
            await anonymous.request("GET", path(fresh.database))
        assert refused.value.status == 401
