"""The walking skeleton over HTTP: health, problem+json errors, and the command line.
(The console script serving end to end: tests/test_installer.py, serve --auto-install.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from support import SAMPLE_MODELS, dead_port, install_design_docs, running_app, running_sidecar, unique_name

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


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "data_service", *args], capture_output=True, text=True, timeout=60)


def test_cli_help_and_bad_flags(keys_dir):
    helped = run_cli("--help")
    assert helped.returncode == 0 and "data-service serve" in helped.stdout and "--couchdb=URL" in helped.stdout
    leaked = run_cli("serve", f"--keys-dir={keys_dir}", "--couchdb=http://admin:hunter2@127.0.0.1:5984")
    assert leaked.returncode == 2 and "no credentials in the URL" in leaked.stderr
    assert "hunter2" not in leaked.stderr
    assert run_cli("serve", f"--keys-dir={keys_dir}", "--port=zero").returncode == 2
    no_keys = run_cli("serve", f"--keys-dir={keys_dir}/missing")
    assert no_keys.returncode == 2 and f"{keys_dir}/missing: cannot read" in no_keys.stderr
    for bad in ("--cursor-ttl=0", "--deployment-id=two words", "--deployment-id="):
        assert run_cli("serve", f"--keys-dir={keys_dir}", bad).returncode == 2, bad


def test_startup_refuses_keysets_that_could_have_been_swapped(tmp_path):
    """With a key-encryption key only encrypted keysets load: a cleartext one in their
    place (whoever can write the keys directory can sign forged documents with it) stops
    startup, as does a keyset file group or others may write. Exit 2, naming the file."""
    kek = tmp_path / "kek.json"
    assert run_cli("keys", "new-kek", f"--out={kek}").returncode == 0
    keys, forged = tmp_path / "keys", tmp_path / "forged"
    assert run_cli("keys", "create", f"--keys-dir={keys}", f"--kek-file={kek}").returncode == 0
    assert run_cli("keys", "create", f"--keys-dir={forged}").returncode == 0
    (keys / "signing.json").write_text((forged / "signing.json").read_text())
    swapped = run_cli("serve", f"--keys-dir={keys}", f"--kek-file={kek}", "--port=1")
    assert swapped.returncode == 2, swapped.stderr
    assert f"{keys}/signing.json: a cleartext keyset, but a key-encryption key is configured" in swapped.stderr
    (forged / "encryption.json").chmod(0o666)
    writable = run_cli("serve", f"--keys-dir={forged}", "--port=1")
    assert writable.returncode == 2 and f"{forged}/encryption.json: writable by group or others" in writable.stderr


def test_bad_models_file_stops_startup(tmp_path, keys_dir):
    models = tmp_path / "models.yaml"
    models.write_text(
        "types:\n  user:\n    version: '1.0'\n    properties:\n      email: {type: string, protection: rot13}\n"
    )
    result = run_cli("serve", f"--keys-dir={keys_dir}", f"--models={models}")
    assert result.returncode == 2
    assert "type 'user'" in result.stderr and "property 'email'" in result.stderr and "rot13" in result.stderr


def test_version_reports_models_digest_and_key_ids_never_keys(keys_dir):
    models = SAMPLE_MODELS
    plain = run_cli("--version")
    assert plain.returncode == 0 and plain.stdout == f"data-service {__version__}\n"
    full = run_cli("--version", f"--models={models}", f"--keys-dir={keys_dir}")
    assert full.returncode == 0, full.stderr
    lines = full.stdout.splitlines()
    assert lines[0] == f"data-service {__version__}"
    assert lines[1] == f"models sha256:{hashlib.sha256(models.read_bytes()).hexdigest()}"
    for info in KeysDir(keys_dir).list():
        assert f"keys {info.purpose}: primary " in full.stdout and str(info.key_id) in full.stdout
    for keyset in Path(keys_dir).glob("*.json"):  # no key material: the keysets' values never show
        for key in json.loads(keyset.read_text())["key"]:
            assert key["keyData"]["value"] not in full.stdout
