"""Query cursors are bound to everything their position depends on — type and version,
index, filters, the key versions protected values were looked up under, the database —
and expire: a cursor from anywhere else is a 400 ``invalid_query``, never a page of
documents the query did not ask for."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from support import running_sidecar, spec_api, unique_name

from data_service import design
from data_service.keys import KeysDir
from data_service.models import parse_models

OWNER_INDEXED = {"type": "string", "indexed": True}
A = {"version": "1.0", "properties": {"owner": OWNER_INDEXED, "title": {"type": "string"}}}
B = {"version": "1.0", "properties": {"owner": {**OWNER_INDEXED, "protection": "sha3-512"}}}
MODELS = {
    "base": {"types": {"a": A, "b": B}},
    # the same query, served by another index of the type
    "reindexed": {
        "types": {
            "a": {**A, "properties": {**A["properties"], "owner": {"type": "string"}}, "indexes": [["owner", "title"]]}
        }
    },
    "bumped": {"types": {"a": {**A, "version": "1.1"}}},  # the same index, another version
}


@pytest.fixture
async def models(tmp_path, db):
    """The models files (by name), their design documents installed, three a's and b's."""
    files, wanted = {}, {}
    for name, models in MODELS.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(models))
        wanted.update(design.design_docs(parse_models(models)))
    for name, doc in wanted.items():
        await db.put_design(name, doc)
    return files


async def page(api, path: str):
    reply = await api.request("GET", path)
    assert reply.status == 200, reply.body
    return reply.body


async def refused(api, path: str, why: str) -> None:
    reply = await api.request("GET", path)
    assert reply.status == 400 and reply.body["code"] == "invalid_query", (path, reply.status, reply.body)
    assert why in reply.body["detail"], reply.body["detail"]


async def test_a_cursor_only_continues_its_own_query(models, config, http, couch):
    base = replace(config, models_path=str(models["base"]))
    async with running_sidecar(base) as url:
        api = await spec_api(http, url)
        for body in [{"owner": "alice", "title": f"t{i}"} for i in range(3)]:
            assert (await api.request("POST", "/v1/a", json=body)).status == 201
            assert (await api.request("POST", "/v1/b", json={"owner": "alice"})).status == 201
        first = await page(api, "/v1/a?owner=alice&limit=1")
        cursor = first["next"]
        assert len((await page(api, f"/v1/a?owner=alice&limit=5&cursor={cursor}"))["items"]) == 2  # its own
        # the case: a plain index's cursor on a sha3 index would page through what does not match
        await refused(api, f"/v1/b?owner=alice&limit=1&cursor={cursor}", "from another query")
    for other in ("reindexed", "bumped"):  # after a models change: another index, another version
        async with running_sidecar(replace(config, models_path=str(models[other]))) as url:
            api = await spec_api(http, url)
            await refused(api, f"/v1/a?owner=alice&limit=1&cursor={cursor}", "from another query")
            assert len((await page(api, "/v1/a?owner=alice&limit=5"))["items"]) == 3  # starting again works
    other_db = couch.database(unique_name("cursor"))
    await other_db.create()
    try:
        for name, doc in design.design_docs(parse_models(MODELS["base"])).items():
            await other_db.put_design(name, doc)
        async with running_sidecar(replace(base, database=other_db.name)) as url:  # same keys, other database
            api = await spec_api(http, url)
            await refused(api, f"/v1/a?owner=alice&limit=1&cursor={cursor}", "not a cursor of this service")
    finally:
        await other_db.drop()
    async with running_sidecar(replace(base, cursor_ttl=0.001)) as url:
        api = await spec_api(http, url)
        short = (await page(api, "/v1/a?owner=alice&limit=1"))["next"]
        await refused(api, f"/v1/a?owner=alice&limit=1&cursor={short}", "expired")


async def test_a_lookup_key_rotation_ends_the_cursors_of_protected_lookups_only(models, config, http, tmp_path):
    keys = KeysDir(tmp_path / "keys")
    keys.create()
    own = replace(config, models_path=str(models["base"]), keys_dir=str(keys.directory))
    async with running_sidecar(own) as url:
        api = await spec_api(http, url)
        for type_name in ("a", "b"):
            for _ in range(3):
                assert (await api.request("POST", f"/v1/{type_name}", json={"owner": "alice"})).status == 201
        hashed = (await page(api, "/v1/b?owner=alice&limit=1"))["next"]
        plain = (await page(api, "/v1/a?owner=alice&limit=1"))["next"]
    keys.rotate("lookup")  # one more segment (the value under each enabled key): positions move
    async with running_sidecar(own) as url:
        api = await spec_api(http, url)
        await refused(api, f"/v1/b?owner=alice&limit=1&cursor={hashed}", "from another query")
        assert len((await page(api, "/v1/b?owner=alice&limit=5"))["items"]) == 3
        assert len((await page(api, f"/v1/a?owner=alice&limit=5&cursor={plain}"))["items"]) == 2
