"""Two-phase key rotation in a fleet: ``keys rotate`` adds a key every sidecar must load
before ``keys promote`` makes it primary. A sidecar still on the old keyset reads what a
rotated one writes before the promotion; after it, documents under the new key are
``key_unavailable`` to it (retryable, never counted as tampering), and its reconciler
leaves leaves it cannot verify alone."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace

from support import SAMPLE_MODELS, install_design_docs, run_command, running_app, spec_api
from support.conflicts import fork
from support.documents import ALICE

from data_service import envelope
from data_service.keys import PURPOSES, KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import load_models
from data_service.protection import Keyring

USER = load_models(SAMPLE_MODELS).get("user")


async def test_a_sidecar_with_the_old_keyset_keeps_reading_through_a_rotation(tmp_path, config, db, http):
    await install_design_docs(db, guard=False)  # conflicts below: see install_design_docs
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    KeysDir(old_dir).create()
    shutil.copytree(old_dir, new_dir)  # what the operator rolls out, sidecar by sidecar
    rotated = KeysDir(new_dir)
    added = {purpose: rotated.rotate(purpose) for purpose in PURPOSES}
    old_config, new_config = replace(config, keys_dir=str(old_dir)), replace(config, keys_dir=str(new_dir))

    async with running_app(old_config) as (old_base, old_ctx), running_app(new_config) as (new_base, _):
        old_api, new_api = await spec_api(http, old_base), await spec_api(http, new_base)
        written = await new_api.request("POST", "/v1/user", json=ALICE)  # after rotate, before promote
        assert written.status == 201
        read = await old_api.request("GET", f"/v1/user/{written.body['id']}")
        assert read.status == 200 and read.body == written.body
        by_email = await old_api.request("GET", f"/v1/user?email={ALICE['email']}")
        assert [item["id"] for item in by_email.body["items"]] == [written.body["id"]]
        by_email = await new_api.request("GET", f"/v1/user?email={ALICE['email']}")  # looked up under both keys
        assert [item["id"] for item in by_email.body["items"]] == [written.body["id"]]

    for purpose, key_id in added.items():
        rotated.promote(purpose, key_id)
    async with running_app(old_config) as (old_base, old_ctx), running_app(new_config) as (new_base, _):
        old_api, new_api = await spec_api(http, old_base), await spec_api(http, new_base)
        later = await new_api.request("POST", "/v1/user", json={**ALICE, "name": "Later"})
        stored = await db.get(later.body["id"])
        assert stored["sig"]["kid"] == added["signing"] and stored["ssn"].startswith(f"aead2:{added['encryption']}:")
        unavailable = await old_api.request("GET", f"/v1/user/{later.body['id']}")
        assert unavailable.status == 503 and unavailable.body["code"] == "key_unavailable"
        assert unavailable.body["retryable"] is True and unavailable.headers["Retry-After"] == "1"
        listing = await old_api.request("GET", "/v1/user")
        assert listing.status == 200 and listing.body["omitted"] == [
            {"id": later.body["id"], "code": "key_unavailable"}
        ]
        assert old_ctx.store.stats.integrity_violations == 0  # not tampering
        assert (await new_api.request("GET", f"/v1/user/{written.body['id']}")).status == 200

        # a conflict with a leaf under the new key: the old sidecar cannot verify it, so it deletes nothing
        current = await db.get(written.body["id"])
        newer = Lifecycle(Keyring(rotated, config.database), "w-new")
        older = Lifecycle(Keyring(KeysDir(old_dir), config.database), "w-old")
        now = dt.datetime.now(dt.UTC)
        leaves = await fork(
            db,
            current,
            newer.patch(USER, current, {"age": 50}, {}, envelope.timestamp(now)).doc,
            older.patch(USER, current, {"age": 51}, {}, envelope.timestamp(now + dt.timedelta(seconds=1))).doc,
        )
        await old_api.request(
            "GET", f"/v1/user/{written.body['id']}", headers={"Cache-Control": "no-cache"}
        )  # past the cache
        assert old_ctx.store.stats.conflicts_unresolvable == 1 and old_ctx.store.stats.conflict_leaves_discarded == 0
        live = [e["ok"]["_rev"] for e in await db.open_revs(written.body["id"]) if not e["ok"].get("_deleted")]
        assert sorted(live) == sorted(leaves)
        # the sidecar holding both keys resolves it (latest wins)
        resolved = await new_api.request("GET", f"/v1/user/{written.body['id']}")
        assert resolved.status == 200 and resolved.body["age"] == 51
        assert "_conflicts" not in await db.get(written.body["id"], conflicts=True)

    assert run_command(old_config, "verify").returncode == 1  # the old keyset cannot vouch for new documents
    result = run_command(new_config, "verify")
    assert result.returncode == 0 and "2 documents checked, 0 failed" in result.stdout, result.stdout
