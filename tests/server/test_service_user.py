"""Least privilege: ``install --service-user`` creates a CouchDB member user, adds it to the
database's ``_security`` (keeping who was there) and ``serve`` runs as it, no admin needed.
On Apache CouchDB the member's limits are checked too (pouchdb-server enforces less)."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import replace

import pytest
from support import ROOT, run_command, running_sidecar, unique_name, until

from data_service.couchdb import CouchDB, CouchDBError, Unauthorized
from data_service.couchdb.transport import path

SAMPLE = ROOT / "models" / "sample.yaml"
PASSWORD = "member-Passw0rd-long"


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


def install_as(config, name: str, password_file, *flags: str) -> subprocess.CompletedProcess:
    result = run_command(
        config,
        "install",
        f"--models={SAMPLE}",
        f"--service-user={name}",
        f"--service-user-password-file={password_file}",
        *flags,
    )
    assert PASSWORD not in result.stdout + result.stderr
    return result


def refusal(config, name: str, password_file, *flags: str) -> str:
    """install refusing the account: exit 1 (nothing written); its stderr."""
    result = install_as(config, name, password_file, *flags)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stderr


def install(config, name: str, password_file) -> str:
    result = install_as(config, name, password_file)
    assert result.returncode == 0, result.stdout + result.stderr
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
    password_file.chmod(0o600)  # a secret file (docs/security.md, "Secret files")

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
        # each node's authentication cache follows _users in its own time; every failed login
        # counts toward CouchDB 3.5's lockout (5 in 5 minutes), so at most 4 tries, 2 s apart
        for attempt in range(4):
            try:
                assert (await renewed.json("GET", "/_session"))["userCtx"]["name"] == member
                break
            except Unauthorized:
                assert attempt < 3, "the new password does not log in"
                await asyncio.sleep(2)

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


# --- an existing account is never taken over silently ------------------------------------


@pytest.fixture
def password_file(tmp_path):
    file = tmp_path / "pw"
    file.write_text(PASSWORD)
    file.chmod(0o600)  # a secret file (docs/security.md, "Secret files")
    return file


async def account(couch, name: str, password: str, roles: list[str]) -> dict:
    """A ``_users`` account made by someone else (no installer marker)."""
    doc = {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": roles, "password": password}
    await couch.request("PUT", path("_users", doc["_id"]), json=doc)
    return await couch.json("GET", path("_users", doc["_id"]))


async def logs_in_as(couch, name: str, password: str) -> bool:
    async with CouchDB(couch.url, auth=(name, password)) as client:
        try:
            return (await client.json("GET", "/_session"))["userCtx"]["name"] == name
        except CouchDBError:
            return False


async def test_an_account_the_installer_did_not_create_is_refused_unless_adopted(couch, fresh, member, password_file):
    """Row 8 of issue 22: install used to reset the password of any existing account and keep its
    roles. Now an account without the installer's marker is refused (its password unchanged,
    nothing written) until ``--service-user-adopt`` says to take it over."""
    await account(couch, member, "someone-elses-Passw0rd", [])
    assert (
        f"CouchDB user {member} exists and was not created by data-service install: installing would set its "
        "password. Choose another --service-user name, or add --service-user-adopt to take it over"
    ) in refusal(fresh, member, password_file)
    assert await logs_in_as(couch, member, "someone-elses-Passw0rd")
    assert not await couch.database(fresh.database).exists()  # refused while planning: nothing written

    adopted = install_as(fresh, member, password_file, "--service-user-adopt")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert f"adopt CouchDB user {member}: set its password, mark it as the service user (no roles)" in adopted.stdout
    assert await logs_in_as(couch, member, PASSWORD) and not await logs_in_as(couch, member, "someone-elses-Passw0rd")
    user = await couch.json("GET", path("_users", f"org.couchdb.user:{member}"))
    assert user["data_service"] == {"service_user": True} and user["roles"] == []
    again = install_as(fresh, member, password_file)  # adopted once: the installer's own from now on
    assert again.returncode == 0 and f"unchanged CouchDB user {member}" in again.stdout


async def test_an_account_with_roles_is_never_adopted_silently(couch, fresh, member, password_file):
    """Roles would give the sidecar their rights: refused even when the password given logs in
    (and even when marked); ``--service-user-adopt`` takes it over naming the roles it keeps."""
    await account(couch, member, PASSWORD, ["finance"])
    assert (
        f"CouchDB user {member} exists with roles finance (the sidecar would have their rights): choose another "
        "--service-user name, or add --service-user-adopt to take it over with them"
    ) in refusal(fresh, member, password_file)
    adopted = install_as(fresh, member, password_file, "--service-user-adopt")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert (
        f"adopt CouchDB user {member}: it logs in with the password given; mark it as the service user "
        "(roles kept: finance)"
    ) in adopted.stdout
    user = await couch.json("GET", path("_users", f"org.couchdb.user:{member}"))
    assert user["roles"] == ["finance"] and user["data_service"] == {"service_user": True}
    assert "exists with roles finance" in refusal(fresh, member, password_file)  # marked, with roles: never silent


async def test_an_account_that_logs_in_with_the_password_given_is_marked_not_reset(couch, fresh, member, password_file):
    """Whoever holds its password owns it (e.g. one created by an installer before the marker
    existed): no roles, so it is marked as the installer's, its password untouched."""
    before = await account(couch, member, PASSWORD, [])
    stdout = install(fresh, member, password_file)
    assert f"adopt CouchDB user {member}: it logs in with the password given; mark it as the service user" in stdout
    user = await couch.json("GET", path("_users", f"org.couchdb.user:{member}"))
    assert user["data_service"] == {"service_user": True} and user["derived_key"] == before["derived_key"]
    assert f"unchanged CouchDB user {member}" in install(fresh, member, password_file)


async def test_a_server_admin_is_never_the_service_user(couch, fresh, tmp_path):
    """Not even with --service-user-adopt: serving as an admin is what the service user avoids."""
    admin, password = fresh.couchdb_user, fresh.couchdb_password
    password_file = tmp_path / "pw"
    password_file.write_text(password)
    password_file.chmod(0o600)
    assert (
        f"CouchDB user {admin} is a server admin; the service user must be a plain member: "
        "choose another --service-user name"
    ) in refusal(fresh, admin, password_file, "--service-user-adopt")
    assert await logs_in_as(couch, admin, password)
