"""``data-service install``: run as an operator runs it (a subprocess, password in the env)
against the real server under test, on fresh database names of its own."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml
from support import ROOT, dead_port, run_command, running_sidecar, unique_name

from data_service import design
from data_service.config import PASSWORD_ENV
from data_service.couchdb import Forbidden, NotFound
from data_service.installer import InstallFailed, install
from data_service.models import load_models
from data_service.seeds import Seed, SeedError, seed_id
from data_service.server import keyring

SAMPLE = ROOT / "models" / "sample.yaml"
MODELS = load_models(SAMPLE)
WANTED = design.design_docs(MODELS)
ADMIN = {
    "email": "root@example.com",
    "name": "Root",
    "password": "s3cret-Passw0rd",
    "ssn": "111-22-3333",
    "country": "NO",
    "age": 50,
}
SECRETS = ["root@example.com", "s3cret-Passw0rd", "111-22-3333", '"NO"']


def run(config, *args: str, models: Path | None = SAMPLE) -> subprocess.CompletedProcess:
    """``data-service install`` against ``config.database``."""
    return run_command(config, "install", *args, *([f"--models={models}"] if models is not None else []))


@pytest.fixture
async def fresh(couch, config):
    """A config for a database name nobody has created; dropped afterwards."""
    name = unique_name("install")
    yield replace(config, database=name)
    await couch.database(name).drop(missing_ok=True)


async def design_revs(db, models=MODELS) -> dict[str, str]:
    """Every design doc's revision, read with the read quorum (``Database.design_docs``)."""
    return {name: doc["_rev"] for name, doc in (await db.design_docs(design.design_docs(models))).items()}


async def check_uuids(couch, output: str) -> None:
    info = await couch.server_info()
    if info.kind == "couchdb":  # reported; written only with --configure-server
        assert "uuids/algorithm = " in output and "set uuids/algorithm" not in output
    else:
        assert f"uuids/algorithm: not supported by {info.kind}; ids stay as the server makes them" in output


async def test_fresh_install_then_a_second_run_changes_nothing(couch, fresh):
    first = run(fresh)
    assert first.returncode == 0, first.stdout + first.stderr
    db = couch.database(fresh.database)
    assert await db.exists()
    assert f"create database {fresh.database}" in first.stdout
    for name in WANTED:
        assert f"create _design/{name}" in first.stdout
    views = [name for name, doc in WANTED.items() if "views" in doc]
    assert f"warm 1/{len(views)} " in first.stderr and f"warm {len(views)}/{len(views)} " in first.stderr
    assert first.stdout.strip().splitlines()[-1].startswith(f"install {fresh.database}: {len(WANTED) + 1} created")

    security = await db.security()
    assert security["members"] == {
        "names": [fresh.couchdb_user] if fresh.couchdb_user else [],
        "roles": ["data-service"],
    }
    assert security["admins"]["roles"] == ["_admin"]
    for name, wanted in WANTED.items():
        stored = await db.get(f"_design/{name}")
        assert design.is_generated(stored) and stored["data_service"]["hash"] == design.content_hash(wanted)
        assert design.content_hash(stored) == design.content_hash(wanted)
    with pytest.raises(Forbidden):  # the guard is live: writes that bypass the sidecar are refused
        await db.put({"_id": "bypass", "type": "user_v1.0", "name": "unsigned"})
    await check_uuids(couch, first.stdout)

    revs = await design_revs(db)
    second = run(fresh)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1].startswith(f"install {fresh.database}: nothing to change")
    assert "unchanged _security" in second.stdout
    assert not [
        line for line in second.stdout.splitlines() if line.startswith(("create ", "update ", "set ", "remove "))
    ]
    assert all(f"unchanged _design/{name}" in second.stdout for name in WANTED)
    assert "warm" not in second.stderr
    assert await design_revs(db) == revs
    assert await db.security() == security


UUIDS = "/_node/_local/_config/uuids/algorithm"


async def set_algorithm(couch, value: str | None) -> None:
    """Set (or, with None, unset) the node's ``uuids/algorithm``: server-wide, so tests put it back."""
    if value is not None:
        await couch.config_put("uuids", "algorithm", value)
        return
    with contextlib.suppress(NotFound):
        await couch.request("DELETE", UUIDS)


async def algorithm(couch) -> str | None:
    try:
        return await couch.config_get("uuids", "algorithm")
    except NotFound:
        return None


async def test_the_server_wide_uuids_algorithm_is_only_reported_unless_configure_server(couch, fresh):
    """Issue 24: install wrote ``uuids/algorithm`` (a setting of the whole, possibly shared,
    server). Now it reports the algorithm and what ids look like, and says how to set it;
    only ``--configure-server`` writes it."""
    info = await couch.server_info()
    if info.kind != "couchdb":  # no node config: reported either way, nothing to set
        for flags in ((), ("--configure-server",)):
            result = run(fresh, *flags)
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"uuids/algorithm: not supported by {info.kind}; ids stay as the server makes them, like " in (
                result.stdout
            )
        return
    before = await algorithm(couch)
    try:
        await set_algorithm(couch, None)
        result = run(fresh)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "unchanged uuids/algorithm = sequential (CouchDB's default): ids like " in result.stdout
        assert await algorithm(couch) is None

        await set_algorithm(couch, "random")
        result = run(fresh)
        assert result.returncode == 0, result.stdout + result.stderr
        assert await algorithm(couch) == "random"  # a server-wide setting: not written without the flag
        [line] = [line for line in result.stdout.splitlines() if "uuids/algorithm" in line]
        assert line.startswith("uuids/algorithm = random: ids like ") and len(line.split()[5]) == 33, line
        assert "install --configure-server sets it, or [uuids] algorithm = sequential in CouchDB's local.ini" in line
        last = result.stdout.strip().splitlines()[-1]
        assert last.endswith(f"nothing to change ({len(WANTED) + 1} unchanged)")  # a note changes nothing

        result = run(fresh, "--configure-server")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "set uuids/algorithm = sequential (was random; server-wide: every database's new ids)" in result.stdout
        assert await algorithm(couch) == "sequential"
    finally:
        await set_algorithm(couch, before)


def changed_models(tmp_path: Path) -> Path:
    """The sample models with the event index on ``kind`` dropped and one on ``note.title`` added."""
    data = yaml.safe_load(SAMPLE.read_text())
    data["types"]["event"]["indexes"] = [["owner", "created_at"]]
    data["types"]["note"]["properties"]["title"]["indexed"] = True
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_a_changed_models_file_touches_only_what_changed(couch, fresh, tmp_path):
    assert run(fresh).returncode == 0
    db = couch.database(fresh.database)
    # an older generated version of one design doc: same name, other content
    stale = await db.get("_design/ds_user_v1-name")
    older = design._marked({"language": "javascript", "views": {design.VIEW: {"map": "function (doc) {}"}}})
    await db.put_design("ds_user_v1-name", {**older, "_rev": stale["_rev"]})
    revs = await design_revs(db)
    models = changed_models(tmp_path)
    expected = [
        "update _design/ds_user_v1-name (content changed)",
        "create _design/ds_note_v1-title",
        "remove _design/ds_event_v2-kind (generated earlier, no longer declared)",
    ]

    dry = run(fresh, "--dry-run", models=models)
    assert dry.returncode == 0, dry.stderr
    assert all(line in dry.stdout for line in expected)
    assert "would create 1, update 1, remove 1" in dry.stdout and "nothing was changed" in dry.stdout
    assert await design_revs(db) == revs  # nothing written

    real = run(fresh, models=models)
    assert real.returncode == 0, real.stderr
    assert all(line in real.stdout for line in expected)
    assert "1 created, 1 updated, 1 removed" in real.stdout
    assert "warm 1/2 ds_note_v1-title" in real.stderr and "warm 2/2 ds_user_v1-name" in real.stderr
    after = await design_revs(db, load_models(models))
    assert "ds_event_v2-kind" not in after and "ds_note_v1-title" in after
    assert after["ds_user_v1-name"] != revs["ds_user_v1-name"]
    untouched = set(revs) - {"ds_user_v1-name", "ds_event_v2-kind"}
    assert {name: after[name] for name in untouched} == {name: revs[name] for name in untouched}
    assert "nothing to change" in run(fresh, models=models).stdout


async def test_dry_run_on_a_fresh_name_creates_nothing(couch, fresh, tmp_path):
    seeds = tmp_path / "seeds.json"
    seeds.write_bytes(orjson.dumps({"seeds": [{"type": "user", "key": "admin-user", "data": ADMIN}]}))
    result = run(fresh, "--dry-run", f"--seed={seeds}")
    assert result.returncode == 0, result.stderr
    assert f"install {fresh.database}: dry run, nothing will be changed" in result.stdout
    assert f"create database {fresh.database}" in result.stdout and "set _security" in result.stdout
    assert all(f"create _design/{name}" in result.stdout for name in WANTED)
    assert f"create seed user/admin-user ({seed_id('user', 'admin-user')})" in result.stdout
    assert "nothing was changed" in result.stdout and "warm" not in result.stderr
    assert not await couch.database(fresh.database).exists()


async def test_seeds_are_stored_like_the_service_stores_documents(couch, fresh, tmp_path, http):
    seeds = tmp_path / "seeds.yaml"
    note = {"title": "Welcome", "body": "first note"}

    def write_seeds(admin: dict) -> None:
        seeds.write_text(
            yaml.safe_dump(
                {
                    "seeds": [
                        {"type": "user", "key": "admin-user", "data": admin},
                        {"type": "note", "key": "welcome", "data": note},
                    ]
                }
            )
        )

    write_seeds(ADMIN)
    first = run(fresh, f"--seed={seeds}")
    assert first.returncode == 0, first.stderr
    admin_id = seed_id("user", "admin-user")
    assert f"create seed user/admin-user ({admin_id})" in first.stdout
    db = couch.database(fresh.database)
    stored = await db.get(admin_id)
    text = orjson.dumps(stored).decode()
    assert not any(secret in text for secret in SECRETS)  # protected, never plaintext in CouchDB
    assert stored["password"].startswith("$2b$10$") and stored["ssn"].startswith("aead2:")
    assert stored["sig"]["v"] == 2 and stored["sig"]["gen"] == 1 and stored["type"] == "user_v1.0"

    async with running_sidecar(fresh) as base:  # signed: the sidecar reads and verifies it
        async with http.get(f"{base}/v1/user/{admin_id}") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["ssn"] == ADMIN["ssn"] and body["country"] == "NO" and "password" not in body
        async with http.post(
            f"{base}/v1/user/{admin_id}/verify", json={"password": ADMIN["password"], "email": ADMIN["email"]}
        ) as resp:
            assert (await resp.json()) == {"matches": {"password": True, "email": True}}
        async with http.get(f"{base}/v1/note/{seed_id('note', 'welcome')}") as resp:
            assert resp.status == 200 and (await resp.json())["title"] == "Welcome"

    count = (await db.info())["doc_count"]
    again = run(fresh, f"--seed={seeds}")
    assert "unchanged seed user/admin-user" in again.stdout and "unchanged seed note/welcome" in again.stdout
    assert "nothing to change" in again.stdout
    assert (await db.info())["doc_count"] == count and (await db.get(admin_id))["_rev"] == stored["_rev"]

    write_seeds({**ADMIN, "name": "Root Admin"})  # a readable property changed
    changed = run(fresh, f"--seed={seeds}")
    assert f"update seed user/admin-user ({admin_id}: properties differ)" in changed.stdout
    assert "unchanged seed note/welcome" in changed.stdout and "0 created, 1 updated" in changed.stdout
    write_seeds({**ADMIN, "name": "Root Admin", "password": "n3w-Passw0rd"})  # only a hashed one changed
    assert "update seed user/admin-user" in run(fresh, f"--seed={seeds}").stdout
    assert (await db.info())["doc_count"] == count
    async with running_sidecar(fresh) as base:
        async with http.get(f"{base}/v1/user/{admin_id}") as resp:
            assert (await resp.json())["name"] == "Root Admin"
        async with http.post(f"{base}/v1/user/{admin_id}/verify", json={"password": "n3w-Passw0rd"}) as resp:
            assert (await resp.json()) == {"matches": {"password": True}}
        note_url = f"{base}/v1/note/{seed_id('note', 'welcome')}"
        async with http.get(note_url) as resp:
            etag = resp.headers["ETag"]
        async with http.delete(note_url, headers={"If-Match": etag}) as resp:
            assert resp.status == 204  # a hard delete: a tombstone at generation 2

    recreated = run(fresh, f"--seed={seeds}")  # CouchDB continues the tombstone's branch: generation 3
    assert "create seed note/welcome" in recreated.stdout, recreated.stdout
    note_doc = await db.get(seed_id("note", "welcome"))
    assert note_doc["_rev"].startswith("3-") and note_doc["sig"]["gen"] == 3
    async with running_sidecar(fresh) as base, http.get(f"{base}/v1/note/{seed_id('note', 'welcome')}") as resp:
        assert resp.status == 200 and (await resp.json())["title"] == "Welcome"


async def test_invalid_seeds_stop_the_install_before_anything_is_written(couch, fresh, tmp_path):
    seeds = tmp_path / "seeds.yaml"
    seeds.write_text(
        yaml.safe_dump(
            {
                "seeds": [
                    {"type": "user", "key": "good", "data": ADMIN},
                    {"type": "user", "key": "bad-one", "data": {**ADMIN, "email": "not-an-email", "age": -1}},
                    {"type": "gadget", "key": "g1", "data": {}},
                ]
            }
        )
    )
    result = run(fresh, f"--seed={seeds}")
    assert result.returncode == 2
    assert "seed user/bad-one: /age: " in result.stderr and "/email: is not a valid email" in result.stderr
    assert "seed gadget/g1: unknown type 'gadget'" in result.stderr
    assert "not-an-email" not in result.stderr  # protected values are never echoed
    assert not await couch.database(fresh.database).exists()

    seeds.write_text("seeds: {not: a list}")
    assert run(fresh, f"--seed={seeds}").returncode == 2


async def test_foreign_design_docs_are_never_touched(couch, fresh):
    out = io.StringIO()
    guard = keyring(fresh)
    await install(couch, fresh.database, MODELS, guard, user=fresh.couchdb_user, out=out, progress_out=io.StringIO())
    db = couch.database(fresh.database)
    mine = await db.put_design(
        "reports", {"language": "javascript", "views": {"all": {"map": "function (doc) { emit(doc._id, null); }"}}}
    )
    for _ in range(2):
        out = io.StringIO()
        report = await install(
            couch, fresh.database, MODELS, guard, user=fresh.couchdb_user, out=out, progress_out=io.StringIO()
        )
        assert "leave _design/reports (no data_service marker: not managed here)" in out.getvalue()
        assert not report.changed and (await db.get("_design/reports"))["_rev"] == mine.rev

    # a design doc without the marker under a name the installer needs: refused, nothing overwritten
    conflicts = await db.get(f"_design/{design.CONFLICTS_NAME}")
    foreign = {k: v for k, v in conflicts.items() if k != "data_service"}
    await db.put(foreign)
    with pytest.raises(InstallFailed, match="without the data_service marker"):
        await install(couch, fresh.database, MODELS, guard, out=io.StringIO(), progress_out=io.StringIO())
    result = run(fresh)
    assert result.returncode == 1 and "without the data_service marker" in result.stderr


async def test_unit_dry_run_and_seed_errors(couch, fresh):
    guard = keyring(fresh)
    out = io.StringIO()
    report = await install(couch, fresh.database, MODELS, guard, dry_run=True, out=out, progress_out=io.StringIO())
    assert report.dry_run and report.changed and report.counts["create"] == len(WANTED) + 1
    assert not await couch.database(fresh.database).exists()
    with pytest.raises(SeedError, match=r"seed note/n1: /title: is required"):
        await install(couch, fresh.database, MODELS, guard, seeds=[Seed("note", "n1", {})], out=io.StringIO())
    assert not await couch.database(fresh.database).exists()


async def test_delete_needs_yes(couch, fresh):
    assert run(fresh).returncode == 0
    refused = run(fresh, "--delete")
    assert refused.returncode == 2 and "add --yes to confirm" in refused.stderr
    assert await couch.database(fresh.database).exists()
    deleted = run(fresh, "--delete", "--yes")
    assert deleted.returncode == 0 and f"deleted database {fresh.database}" in deleted.stdout
    assert not await couch.database(fresh.database).exists()
    again = run(fresh, "--delete", "--yes")
    assert again.returncode == 0 and "does not exist; nothing to delete" in again.stdout


async def test_couchdb_failure_is_exit_1_with_a_clear_message(fresh):
    result = run(replace(fresh, couchdb_url=f"http://127.0.0.1:{dead_port()}"))
    assert result.returncode == 1
    assert result.stderr.startswith("data-service: CouchDB at http://127.0.0.1:") and "failed" in result.stderr


async def test_serve_auto_install_makes_a_fresh_database_ready(couch, fresh, http):
    port = dead_port()
    env = {**os.environ, PASSWORD_ENV: fresh.couchdb_password or ""}
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "data-service"),
        "serve",
        "--auto-install",
        f"--couchdb={fresh.couchdb_url}",
        f"--database={fresh.database}",
        f"--port={port}",
        f"--keys-dir={fresh.keys_dir}",
        f"--models={SAMPLE}",
    ]
    if fresh.couchdb_user:
        cmd.append(f"--couchdb-user={fresh.couchdb_user}")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        status = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status != 200 and proc.poll() is None:
            try:
                async with http.get(f"http://127.0.0.1:{port}/_health?quick=false") as resp:
                    status = resp.status
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, output
    assert f"create database {fresh.database}" in output and "listening on" in output
    assert output.index(f"install {fresh.database}:") < output.index("listening on")
    assert set(await design_revs(couch.database(fresh.database))) == set(WANTED)
    assert (fresh.couchdb_password or "\0") not in output
