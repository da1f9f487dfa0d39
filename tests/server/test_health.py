"""The walking skeleton over HTTP: health and problem+json errors. (The command line without
a server: tests/unit/test_startup_checks.py; the console script serving end to end:
tests/server/test_installer.py, serve --auto-install.)"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

from support import dead_port, install_design_docs, running_app, running_sidecar, unique_name

from data_service import __version__
from data_service.keys import KeysDir

PROBLEM = "application/problem+json"


async def test_liveness_needs_nothing_and_says_what_runs(config, http):
    async with running_sidecar(replace(config, couchdb_url=f"http://127.0.0.1:{dead_port()}")) as base:
        async with http.get(f"{base}/_health") as resp:
            body = await resp.json()
    assert resp.status == 200 and body["status"] == "ok"
    digest = hashlib.sha256(Path(config.models_path).read_bytes()).hexdigest()
    keys = {info.purpose: info for info in KeysDir(config.keys_dir).list() if info.primary}
    assert body["build"]["version"] == __version__
    assert body["build"]["models_digest"] == f"sha256:{digest}"
    assert {purpose: ids["primary"] for purpose, ids in body["build"]["keys"].items()} == {
        purpose: info.key_id for purpose, info in keys.items()
    }
    assert set(keys) == {"signing", "encryption", "deterministic", "lookup"}


async def test_readiness_when_database_exists_and_is_installed(sidecar, http, db):
    await install_design_docs(db)
    async with http.get(f"{sidecar}/_health?quick=false") as resp:
        body = await resp.json()
    assert resp.status == 200 and resp.content_type == "application/json"
    assert body["status"] == "ok" and body["database"]["name"] == db.name
    assert body["couchdb"]["kind"] in ("couchdb", "pouchdb-server")


async def test_readiness_is_degraded_after_a_write_a_copy_did_not_store(config, db, http):
    await install_design_docs(db)
    async with running_app(config) as (base, ctx):
        async with http.get(f"{base}/_health?quick=false") as resp:
            before = await resp.json()
        ctx.store.stats.last_copy_missing = time.monotonic()  # what a 202 no race explains records
        async with http.get(f"{base}/_health?quick=false") as resp:
            after = await resp.json()
    assert before["status"] == "ok" and "degraded" not in before
    assert before["cluster"]["nodes"] == "unavailable" or before["cluster"]["connected"] == before["cluster"]["nodes"]
    assert resp.status == 200 and after["status"] == "degraded"
    assert after["degraded"] == ["writes not stored on every copy (a copy unreachable) in the last 60 s"]


async def test_readiness_missing_database_is_503(config, http):
    async with running_sidecar(replace(config, database=unique_name("absent"))) as base:
        async with http.get(f"{base}/_health?quick=false") as resp:
            body = await resp.json(content_type=None)
    assert resp.status == 503 and resp.content_type == PROBLEM
    assert resp.headers["Retry-After"] == "1"
    assert body["code"] == "database_missing" and body["retryable"] is True


async def test_readiness_couchdb_down_is_503(config, http):
    async with running_sidecar(replace(config, couchdb_url=f"http://127.0.0.1:{dead_port()}")) as base:
        async with http.get(f"{base}/_health?quick=false") as resp:
            body = await resp.json(content_type=None)
    assert resp.status == 503 and "Retry-After" in resp.headers
    assert body["code"] == "couchdb_unavailable" and body["status"] == 503


async def test_unknown_path_and_wrong_method_are_problems(sidecar, http):
    async with http.get(f"{sidecar}/nowhere") as resp:
        body = await resp.json(content_type=None)
    assert resp.status == 404 and resp.content_type == PROBLEM
    assert body["code"] == "not_found" and body["instance"] == "/nowhere"
    async with http.post(f"{sidecar}/_health", data=b"{}") as resp:
        body = await resp.json(content_type=None)
    assert resp.status == 405 and resp.headers["Allow"] == "GET"
    assert body["code"] == "method_not_allowed" and resp.content_type == PROBLEM
