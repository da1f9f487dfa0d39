"""Version 1 documents in a real database: read lazily as version 2, migrated (resumed after
a kill) and queried; old documents failing their check or migration named, never upgraded;
``/v1/_types`` lists migrations. The migration rules are tests/unit/test_migrations.py's."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import uuid

from faults import FaultProxy
from support import ROOT, run_command, running_app, spec_api
from support.migrations import ANN, V1_PATH, V2_PATH, stored_v1

from data_service.design import VIEW
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.protection import Keyring


async def v2_count(db) -> int:
    """Documents the version 2 listing view holds (only version 2 documents are in it)."""
    return (await db.view("ds_member_v2", VIEW, limit=0)).total_rows


async def killed_midway(config, proxy_port: int, db) -> int:
    """``data-service migrate --batch=10`` through a slow proxy, SIGKILLed once it has
    written something: how many documents were version 2 when it died."""
    flags = [f"--couchdb=http://127.0.0.1:{proxy_port}", f"--database={config.database}"]
    flags += [f"--keys-dir={config.keys_dir}", f"--models={V2_PATH}", "--batch=10"]
    if config.couchdb_user:
        flags.append(f"--couchdb-user={config.couchdb_user}")
    env = {**os.environ, "DATA_SERVICE_COUCHDB_PASSWORD": config.couchdb_password or ""}
    before = await v2_count(db)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "data_service", "migrate", *flags, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(60):
            while await v2_count(db) == before:
                assert process.returncode is None, "migrate ended before it was killed"
                await asyncio.sleep(0.05)
    finally:
        process.kill()
        await process.wait()
    return await v2_count(db)


async def test_v1_to_v2_migration_read_lazily_then_migrated_resumed_and_queried(db, config, http):
    v1_config = dataclasses.replace(config, models_path=str(V1_PATH))
    v2_config = dataclasses.replace(config, models_path=str(V2_PATH))
    result = await asyncio.to_thread(run_command, config, "install", f"--models={V1_PATH}")
    assert result.returncode == 0, result.stderr
    total = 120
    async with running_app(v1_config) as (base, _):
        api = await spec_api(http, base)
        items = [
            {"op": "create", "body": {**ANN, "nick": f"m{i:03}", "email": f"m{i}@example.com", "password": "pw-123"}}
            for i in range(total)
        ]
        reply = await api.request("POST", "/v1/member/_bulk", json={"items": items})
        assert [r["status"] for r in reply.body["results"]] == [201] * total
        ids = [r["id"] for r in reply.body["results"]]

    result = await asyncio.to_thread(run_command, config, "install", f"--models={V2_PATH}")
    assert result.returncode == 0, result.stderr
    assert "create _design/ds_member_v2-level-name" in result.stdout
    assert (
        f"keep _design/ds_member_v1-nick: {total} documents of member version 1 still use it "
        "(data-service migrate upgrades them)" in result.stdout
    )

    async with running_app(v2_config) as (base, ctx):
        api = await spec_api(http, base)
        # -- read lazily: upgraded on the way out, stored as it was
        reply = await api.request("GET", f"/v1/member/{ids[0]}")
        assert reply.status == 200 and reply.body["meta"]["version"] == "2.0"
        assert {k: v for k, v in reply.body.items() if k not in ("id", "meta")} == {
            "name": "m000",
            "email": "m0@example.com",
            "level": 0,
            "address": {"city": "Oslo"},
            "country": "NO",
        }
        raw = await db.get(ids[0])
        assert raw["type"] == "member_v1.0" and raw["email"] == "m0@example.com" and reply.etag == f'"{raw["_rev"]}"'
        verified = await api.request("POST", f"/v1/member/{ids[0]}/verify", json={"password": "pw-123"})
        assert verified.body == {"matches": {"password": True}}  # the bcrypt hash came along as stored

        # -- before migration: version 1 documents are in version 1's views only
        assert (await api.request("GET", "/v1/member?level=0")).body["items"] == []
        patched = await api.request(
            "PATCH",
            f"/v1/member/{ids[1]}",
            json={"level": 3},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert patched.status == 200 and patched.body["name"] == "m001"
        raw = await db.get(ids[1])
        assert raw["type"] == "member_v2.0" and raw["email"].startswith("aead2:") and "nick" not in raw
        assert [d["id"] for d in (await api.request("GET", "/v1/member?level=3")).body["items"]] == [ids[1]]
        assert (await api.request("GET", "/v1/member?name=m003")).body["items"] == []
        bulk = [{"op": "patch", "id": ids[2], "patch": {"level": 5}}]
        reply = await api.request("POST", "/v1/member/_bulk", json={"items": bulk})
        assert reply.body["results"][0]["status"] == 200 and reply.body["results"][0]["body"]["name"] == "m002"
        assert (await db.get(ids[2]))["type"] == "member_v2.0"
        feed = (await api.request("GET", "/v1/member/_changes?limit=200")).body["results"]
        shown = {item["id"]: item["doc"] for item in feed if "doc" in item}
        assert shown[ids[3]]["meta"]["version"] == "2.0" and shown[ids[3]]["name"] == "m003"  # upgraded, not stored

        # -- migrate, killed midway, then run again
        async with FaultProxy.to(config.couchdb_url) as proxy:
            proxy.delay = 0.15
            done = await killed_midway(config, proxy.port, db)
        assert 1 < done < total, done
        result = await asyncio.to_thread(run_command, config, "migrate", f"--models={V2_PATH}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"migrate: {total}/{total} documents (100%)" in result.stderr  # progress
        summary = f"migrate: {total} checked, {total - done} migrated, {done} already current, 0 skipped"
        assert summary in result.stdout
        rows = (await db.all_docs(keys=ids, include_docs=True)).rows
        assert {row["doc"]["type"] for row in rows} == {"member_v2.0"}
        assert all(row["doc"]["email"].startswith("aead2:") for row in rows)
        for row in rows[:3]:
            ctx.store.lifecycle.check_signature(row["doc"])

        # -- queried: every document, paged, by the new version's views
        seen, path = [], "/v1/member?level=0&sort=name&limit=25"
        while path:
            page = await api.request("GET", path)
            seen += [item["name"] for item in page.body["items"]]
            path = page.body["next"] and f"/v1/member?level=0&sort=name&limit=25&cursor={page.body['next']}"
        assert seen == [f"m{i:03}" for i in range(total) if i not in (1, 2)]
        assert [d["id"] for d in (await api.request("GET", "/v1/member?name=m003")).body["items"]] == [ids[3]]
        again = await asyncio.to_thread(run_command, config, "migrate", f"--models={V2_PATH}")
        assert again.returncode == 0 and f"0 migrated, {total} already current" in again.stdout

    result = await asyncio.to_thread(run_command, config, "install", f"--models={V2_PATH}")
    assert result.returncode == 0, result.stderr
    assert "remove _design/ds_member_v1-nick (generated earlier, no document of that version left)" in result.stdout
    assert "keep _design" not in result.stdout


async def test_old_documents_that_fail_their_check_or_migration_are_named_never_upgraded(db, config, http):
    writer = Lifecycle(Keyring(KeysDir(config.keys_dir), db.name), "w1")
    await asyncio.to_thread(run_command, config, "install", f"--models={V2_PATH}")
    rev = f"1-{uuid.uuid4().hex}"
    good = stored_v1(writer, docid="good", rev=rev)
    tampered = {**stored_v1(writer, docid="tampered", rev=rev), "nick": "mallory"}
    nameless = stored_v1(writer, {**ANN, "nick": ""}, docid="nameless", rev=rev)  # minLength 1 in both: hand-made
    assert await db.bulk_docs([good, tampered, nameless], new_edits=False) == []
    async with running_app(dataclasses.replace(config, models_path=str(V2_PATH))) as (base, _):
        api = await spec_api(http, base)
        assert (await api.request("GET", "/v1/member/good")).status == 200
        reply = await api.request("GET", "/v1/member/tampered")
        assert reply.status == 500 and reply.body["code"] == "integrity_violation"
        reply = await api.request("GET", "/v1/member/nameless")
        assert reply.status == 500 and reply.body["code"] == "migration_failed"
        assert "/name" in reply.body["detail"] and "ann@example.com" not in reply.body["detail"]
    result = await asyncio.to_thread(run_command, config, "migrate", f"--models={V2_PATH}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SKIPPED tampered: tampered: signature does not match the content" in result.stdout
    assert "SKIPPED nameless: nameless: the upgraded document does not match version 2.0 at /name" in result.stdout
    assert "1 migrated, 0 already current, 2 skipped" in result.stdout
    assert (await db.get("tampered"))["type"] == (await db.get("nameless"))["type"] == "member_v1.0"


async def test_types_list_their_migrations_and_set_properties(config, http):
    conflict_models = ROOT / "tests" / "conflict_models.yaml"
    for path, name, expected in ((V2_PATH, "member", [1]), (conflict_models, "cart", [])):
        async with running_app(dataclasses.replace(config, models_path=str(path))) as (base, _):
            api = await spec_api(http, base)
            reply = await api.request("GET", "/v1/_types")
            [info] = [t for t in reply.body["types"] if t["name"] == name]
            assert info["migrates_from"] == expected
            if name == "cart":
                assert info["properties"]["items"] == {"protection": "plain", "indexed": False, "merge": "set"}
                assert "merge" not in info["properties"]["owner"]
