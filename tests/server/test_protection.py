"""Protection end to end: the sidecar over HTTP, CouchDB read and edited directly,
and the ``verify`` / ``reencrypt`` commands as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace

import orjson
import pytest
from support import ROOT, run_command, running_sidecar, spec_api
from support.documents import ALICE, create_user
from support.metrics import metric_of

from data_service.couchdb import Forbidden
from data_service.design import GUARD_NAME, guard
from data_service.keys import KeysDir
from data_service.models import load_models
from data_service.protection import Keyring

SECRETS = ["alice@example.com", "p4ss-w0rd-Ω", "123-45-6789", '"GB"']
USER = load_models(ROOT / "models" / "sample.yaml").get("user")


async def raw(db, docid: str) -> dict:
    return await db.get(docid)


@pytest.fixture
def own_keys(tmp_path, config):
    """A keys directory of this test's own (it gets rotated) and a config using it."""
    keys = KeysDir(tmp_path / "keys")
    keys.create()
    return keys, replace(config, keys_dir=str(keys.directory))


async def test_a_patch_of_one_plain_property_leaves_every_stored_ciphertext_byte_identical(api, db):
    user = await create_user(api)
    before = await raw(db, user["id"])
    reply = await api.request(
        "PATCH",
        f"/v1/user/{user['id']}",
        data=b'{"age": 42}',
        headers={"Content-Type": "application/merge-patch+json", "If-Match": f'"{before["_rev"]}"'},
    )
    assert reply.status == 200 and reply.body["age"] == 42
    after = await raw(db, user["id"])
    assert after["age"] == 42 and after["_rev"] != before["_rev"] and after["sig"] != before["sig"]
    for name in ("email", "password", "ssn", "country", "name"):
        assert after[name] == before[name], name


async def test_couchdb_never_sees_protected_plaintext(api, db):
    user = await create_user(api)
    stored = await raw(db, user["id"])
    text = orjson.dumps(stored).decode()
    for secret in SECRETS:
        assert secret not in text
    assert stored["name"] == "Alice" and stored["age"] == 41  # plain stays plain
    assert stored["password"].startswith("$2b$10$")
    assert stored["ssn"].startswith("aead2:") and stored["country"].startswith("daead2:")
    assert stored["email"].startswith("sha3:") and set(stored["sig"]) == {"v", "kid", "gen", "mac"}
    # the caller gets readable values back, never the hashed ones
    assert user["ssn"] == "123-45-6789" and user["country"] == "GB"
    assert "password" not in user and "email" not in user
    got = await api.request("GET", f"/v1/user/{user['id']}")
    assert got.body == user


async def test_updates_keep_protection(api, db):
    user = await create_user(api)
    url = f"/v1/user/{user['id']}"
    patched = await api.request(
        "PATCH",
        url,
        data=b'{"ssn": "987-65-4321", "age": 42}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status == 200 and patched.body["ssn"] == "987-65-4321"
    stored = await raw(db, user["id"])
    assert "987-65-4321" not in orjson.dumps(stored).decode()
    # hashed values the patch did not touch are kept: the password still verifies
    check = await api.request("POST", f"{url}/verify", json={"password": ALICE["password"]})
    assert check.body == {"matches": {"password": True}}
    new_password = await api.request(
        "PATCH", url, data=b'{"password": "n3w-secret!"}', headers={"Content-Type": "application/merge-patch+json"}
    )
    assert new_password.status == 200
    check = await api.request("POST", f"{url}/verify", json={"password": "n3w-secret!", "email": ALICE["email"]})
    assert check.body == {"matches": {"password": True, "email": True}}


async def test_verify_endpoint(api):
    user = await create_user(api)
    url = f"/v1/user/{user['id']}/verify"
    good = await api.request("POST", url, json={"password": ALICE["password"], "email": "alice@example.com"})
    assert good.status == 200 and good.body == {"matches": {"password": True, "email": True}}
    bad = await api.request("POST", url, json={"password": "p4ss-w0rd-Ω!", "email": "eve@example.com"})
    assert bad.body == {"matches": {"password": False, "email": False}}
    too_long = await api.request("POST", url, json={"password": "x" * 73})
    assert too_long.status == 422 and too_long.body["errors"] == [
        {"path": "/password", "message": "is longer than 72 bytes"}
    ]
    readable = await api.request("POST", url, json={"ssn": "123-45-6789"})
    assert readable.status == 422
    # 72 bytes is the limit in bytes, not characters: 37 two-byte characters are 74 bytes
    created = await api.request("POST", "/v1/user", json={**ALICE, "password": "é" * 37})
    assert created.status == 422 and created.body["errors"][0]["message"] == "is longer than 72 bytes"


async def test_bcrypt_never_blocks_the_event_loop(config, http, tmp_path):
    """Six bcrypt checks at cost 13 (~0.5 s each, two threads) run in the thread pool; the loop stays
    free, so every liveness call answers before the first check. Hashing on the loop would answer that
    first check before any health call could be read. (Cost 13, not the sample's 10: the margin between
    a liveness call and one hash must survive a loaded CI machine.)"""
    models = tmp_path / "slow.yaml"
    models.write_text(
        'types: {account: {version: "1.0", properties: '
        "{password: {type: string, protection: bcrypt, bcrypt_cost: 13}}}}"
    )
    async with running_sidecar(replace(config, models_path=str(models))) as base:
        api = await spec_api(http, base)
        user = (await api.request("POST", "/v1/account", json={"password": "p4ss-w0rd"})).body
        order: list[str] = []

        async def verify():
            await api.request("POST", f"/v1/account/{user['id']}/verify", json={"password": "p4ss-w0rd"})
            order.append("verify")

        async def health():
            await asyncio.sleep(0.01)
            reply = await api.request("GET", "/_health")
            assert reply.status == 200
            order.append("health")

        await asyncio.gather(*(verify() for _ in range(6)), *(health() for _ in range(5)))
    assert order == ["health"] * 5 + ["verify"] * 6


async def test_every_kind_of_tampering_is_detected(api, db, config, caplog, tmp_path):
    users = [await create_user(api, name=f"user{i}", ssn=f"000-00-000{i}") for i in range(8)]
    ids = [u["id"] for u in users]
    docs = [await raw(db, docid) for docid in ids]
    stranger = KeysDir(tmp_path / "stranger")
    stranger.create()

    edited = {**docs[0], "name": "Mallory"}  # a property edited
    unsigned = {k: v for k, v in docs[1].items() if k != "sig"}  # signature removed
    borrowed = {**docs[2], "sig": docs[3]["sig"]}  # another doc's signature
    copy = {k: v for k, v in docs[4].items() if k != "_rev"} | {"_id": "copied0body"}  # body copied to a new id
    swap_a, swap_b = {**docs[5], "ssn": docs[6]["ssn"]}, {**docs[6], "ssn": docs[5]["ssn"]}  # ciphertexts swapped
    retyped = {**docs[7], "type": "user_v1.9"}  # type changed
    # a key the keyset does not hold: perhaps a newer one another sidecar has (see keys rotate), so it is
    # unavailable (retryable), not tampering, until a sidecar holding that key says otherwise
    forged = Keyring(stranger, db.name).sign({k: v for k, v in docs[3].items() if k != "sig"}, 2)
    for doc in (edited, unsigned, borrowed, copy, swap_a, swap_b, retyped, forged):
        await db.put(doc)
    tampered = [ids[0], ids[1], ids[2], "copied0body", ids[5], ids[6], ids[7]]

    caplog.set_level(logging.WARNING, logger="data_service.store")
    for docid in tampered:
        reply = await api.request("GET", f"/v1/user/{docid}")
        assert reply.status == 500, docid
        assert reply.body["code"] == "integrity_violation" and reply.body["retryable"] is False
        assert "Mallory" not in orjson.dumps(reply.body).decode()
        update = await api.request("PUT", f"/v1/user/{docid}", json=ALICE, headers={"If-Match": "*"})
        assert update.status == 500  # never re-signed over a tampered document
    logged = caplog.text
    assert all(f"document {docid}" in logged for docid in tampered) and "Mallory" not in logged
    unknown = await api.request("GET", f"/v1/user/{ids[3]}")
    assert unknown.status == 503 and unknown.body["code"] == "key_unavailable" and unknown.body["retryable"]
    assert unknown.headers["Retry-After"] == "1"
    assert (await api.request("PUT", f"/v1/user/{ids[3]}", json=ALICE, headers={"If-Match": "*"})).status == 503
    violations = await metric_of(api.session, api.base, "data_service_integrity_violations_total")
    assert violations == 2 * len(tampered)  # GET and PUT of each tampered one; not the other

    result = run_command(config, "verify")
    assert result.returncode == 1, result.stderr
    failed = {line.split()[1].rstrip(":") for line in result.stdout.splitlines() if line.startswith("FAILED")}
    assert failed == {*tampered, ids[3]}
    assert "verify: 9 documents checked, 8 failed" in result.stdout
    assert "verify:" in result.stderr  # progress


async def test_verify_command_passes_a_clean_database(api, config):
    for i in range(3):
        await create_user(api, name=f"n{i}")
    result = run_command(config, "verify")
    assert result.returncode == 0 and "3 documents checked, 0 failed" in result.stdout


async def test_rotation_reencrypt_and_disable(own_keys, db, http):
    keys, config = own_keys
    old = {p: keys.load(p).keyset_info().primary_key_id for p in ("signing", "encryption", "deterministic", "lookup")}
    async with running_sidecar(config) as base:
        api = await spec_api(http, base)
        under_a = await create_user(api, name="under A")
    for purpose in old:
        keys.promote(purpose, keys.rotate(purpose))
    async with running_sidecar(config) as base:
        api = await spec_api(http, base)
        under_b = await create_user(api, name="under B")
        for user in (under_a, under_b):
            assert (await api.request("GET", f"/v1/user/{user['id']}")).body["ssn"] == ALICE["ssn"]
    snapshot_a = await raw(db, under_a["id"])
    assert snapshot_a["sig"]["kid"] == old["signing"]

    result = run_command(config, "reencrypt", f"--models={ROOT / 'models' / 'sample.yaml'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 checked, 1 rewritten, 1 already current, 0 skipped" in result.stdout
    assert "1 sha3-512 values stay under older lookup keys" in result.stdout
    again = run_command(config, "reencrypt", f"--models={ROOT / 'models' / 'sample.yaml'}")
    assert "0 rewritten, 2 already current" in again.stdout  # resumable: done work is skipped

    rewritten = await raw(db, under_a["id"])
    new = {p: keys.load(p).keyset_info().primary_key_id for p in old}
    assert rewritten["sig"]["kid"] == new["signing"]
    assert rewritten["ssn"].startswith(f"aead2:{new['encryption']}:")
    assert rewritten["country"].startswith(f"daead2:{new['deterministic']}:")
    assert rewritten["meta"] == snapshot_a["meta"]  # not a caller's update

    for purpose in ("signing", "encryption", "deterministic"):
        keys.set_status(purpose, old[purpose], "DISABLED")
    async with running_sidecar(config) as base:
        api = await spec_api(http, base)
        for user in (under_a, under_b):
            reply = await api.request("GET", f"/v1/user/{user['id']}")
            assert reply.status == 200 and reply.body["ssn"] == ALICE["ssn"] and reply.body["name"] == user["name"]
        # a copy still under key A (restored from a backup, say) fails clearly
        await db.put({**snapshot_a, "_rev": rewritten["_rev"]})
        stale = await api.request("GET", f"/v1/user/{under_a['id']}", headers={"Cache-Control": "no-cache"})
        assert stale.status == 503 and stale.body["code"] == "key_unavailable"
        assert str(old["signing"]) in stale.body["detail"]


async def test_guard_rejects_writes_that_bypass_the_sidecar(api, db):
    await db.put_design(GUARD_NAME, guard())
    user = await create_user(api)  # the sidecar's own writes pass
    assert (await api.request("GET", f"/v1/user/{user['id']}")).status == 200
    stored = await raw(db, user["id"])
    for doc, why in [
        ({"_id": "x1", "name": "no type"}, "type"),
        ({"_id": "x2", "type": "User", "sig": stored["sig"]}, "type"),
        ({"_id": "x3", "type": "user_v1.0", "name": "unsigned"}, "signature"),
        ({k: v for k, v in stored.items() if k != "sig"}, "signature"),
    ]:
        with pytest.raises(Forbidden) as caught:
            await db.put(doc)
        assert why in caught.value.reason
    assert json.dumps(guard()).count("validate_doc_update") == 1
