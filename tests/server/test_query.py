"""Collection queries through index views, against the running sidecar and a real CouchDB."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from urllib.parse import quote

import pytest
from support import install_design_docs, running_sidecar, spec_api
from support.documents import ALICE, EVENTS

from data_service.keys import KeysDir

pytestmark = pytest.mark.one_copy  # query semantics, not replica lag


@pytest.fixture
async def installed(db):
    await install_design_docs(db)
    return db


async def create_all(api, type_name: str, bodies: list[dict], concurrency: int = 20) -> list[dict]:
    gate = asyncio.Semaphore(concurrency)

    async def one(body):
        async with gate:
            reply = await api.request("POST", f"/v1/{type_name}", json=body)
            assert reply.status == 201, reply.body
            return reply.body

    return list(await asyncio.gather(*(one(b) for b in bodies)))


async def ids_of(api, path: str) -> list[str]:
    reply = await api.request("GET", path)
    assert reply.status == 200, reply.body
    return [item["id"] for item in reply.body["items"]]


@pytest.fixture
async def events(api, installed):
    created = await create_all(
        api,
        "event",
        [{"owner": o, "kind": k, "created_at": t, "payload": {"n": i}} for i, (o, k, t) in enumerate(EVENTS)],
    )
    return {body["payload"]["n"]: body["id"] for body in created}


async def test_equality_range_prefix_and_sort(api, events):
    by_n = events
    assert set(await ids_of(api, "/v1/event?owner=ann")) == {by_n[0], by_n[1], by_n[2]}
    assert set(await ids_of(api, "/v1/event?kind=login")) == {by_n[0], by_n[2], by_n[3]}
    assert await ids_of(api, "/v1/event?created_at[gte]=2026-01-03T10:00:00Z") == [by_n[2], by_n[4], by_n[5]]
    assert await ids_of(api, "/v1/event?created_at[gt]=2026-01-03T10:00:00Z") == [by_n[4], by_n[5]]
    assert await ids_of(api, "/v1/event?created_at[lt]=2026-01-02T10:00:00Z") == [by_n[0], by_n[3]]
    assert await ids_of(api, "/v1/event?created_at[lte]=2026-01-02T10:00:00Z") == [by_n[0], by_n[3], by_n[1]]
    assert set(await ids_of(api, "/v1/event?owner[prefix]=b")) == {by_n[3], by_n[4]}
    assert await ids_of(api, "/v1/event?sort=-created_at&limit=2") == [by_n[5], by_n[4]]
    assert await ids_of(api, "/v1/event?sort=created_at&limit=2") == [by_n[0], by_n[3]]
    # compound index [owner, created_at]: range and sort on the second property
    assert await ids_of(api, "/v1/event?owner=ann&created_at[gt]=2026-01-01T10:00:00Z") == [by_n[1], by_n[2]]
    assert await ids_of(api, "/v1/event?owner=ann&sort=-created_at") == [by_n[2], by_n[1], by_n[0]]


async def test_most_recent_per_owner(api, events):
    for owner, expected in (("ann", 2), ("bob", 4), ("carl", 5)):
        reply = await api.request("GET", f"/v1/event?owner={owner}&sort=-created_at&limit=1")
        assert [i["id"] for i in reply.body["items"]] == [events[expected]]
        assert reply.body["items"][0]["payload"] == {"n": expected}
    assert await ids_of(api, "/v1/event?owner=nobody&sort=-created_at&limit=1") == []


async def test_listing_without_filters_and_unknown_filters(api, events):
    assert len(await ids_of(api, "/v1/event")) == len(EVENTS)
    for path, words in [
        ("/v1/event?payload=x", "cannot filter"),
        ("/v1/event?colour=red", "not a property"),
        ("/v1/event?kind=login&owner=ann", "no index of event serves"),
        ("/v1/event?owner=ann&sort=kind", "no index"),
        ("/v1/event?created_at[gt]=a&created_at[gte]=b", "or twice with a lower and an upper bound"),
        ("/v1/event?created_at[prefix]=a&created_at[lt]=b", "or twice with a lower and an upper bound"),
        ("/v1/event?owner[gt]=a&created_at[lt]=b", "range conditions on one field"),
        ("/v1/event?meta.deleted_at=x", "not a property"),
        ("/v1/event?owner[near]=x", "operators"),
        ("/v1/event?limit=0", "limit"),
        ("/v1/event?limit=1001", "limit"),
        ("/v1/user?email[prefix]=a", "equality only"),
        ("/v1/user?sort=country", "no meaningful order"),
        ("/v1/user?age=old", "not a integer"),
    ]:
        reply = await api.request("GET", path)
        assert reply.status == 400 and reply.body["code"] == "invalid_query", path
        assert words in reply.body["detail"], (path, reply.body["detail"])
    listing = await api.request("GET", "/v1/event?kind=login&owner=ann")
    assert "[owner, created_at]" in listing.body["detail"] and "[kind]" in listing.body["detail"]


async def test_soft_deleted_left_out_unless_asked(api, installed):
    users = await create_all(api, "user", [{**ALICE, "name": f"n{i}", "email": f"u{i}@example.com"} for i in range(3)])
    gone = users[1]
    etag = (await api.request("GET", f"/v1/user/{gone['id']}")).etag
    assert (await api.request("DELETE", f"/v1/user/{gone['id']}", headers={"If-Match": etag})).status == 204
    live = await ids_of(api, "/v1/user")
    assert gone["id"] not in live and len(live) == 2
    everything = await api.request("GET", "/v1/user?include_deleted=true")
    deleted = [i for i in everything.body["items"] if i["id"] == gone["id"]]
    assert len(everything.body["items"]) == 3 and deleted[0]["meta"]["deleted_at"]
    assert await ids_of(api, "/v1/user?name=n1") == []


async def test_protected_lookups_survive_key_rotation(tmp_path, config, installed, http):
    keys = KeysDir(tmp_path / "keys")
    keys.create()
    config = replace(config, keys_dir=str(keys.directory))
    async with running_sidecar(config) as base:
        api = await spec_api(http, base)
        before = await create_all(
            api,
            "user",
            [
                {**ALICE, "email": "same@example.com", "country": "FR"},
                {**ALICE, "email": "other@example.com", "country": "DE"},
            ],
        )
    for purpose in ("lookup", "deterministic", "signing", "encryption"):
        keys.rotate(purpose)
    async with running_sidecar(config) as base:
        api = await spec_api(http, base)
        after = await create_all(api, "user", [{**ALICE, "email": "same@example.com", "country": "FR"}])
        # one value, two stored forms (old key, new key): both found
        assert set(await ids_of(api, f"/v1/user?email={quote('same@example.com')}")) == {
            before[0]["id"],
            after[0]["id"],
        }
        assert set(await ids_of(api, "/v1/user?country=FR")) == {before[0]["id"], after[0]["id"]}
        assert await ids_of(api, "/v1/user?country=DE") == [before[1]["id"]]
        paged = await api.request("GET", "/v1/user?country=FR&limit=1")
        second = await api.request("GET", f"/v1/user?country=FR&limit=1&cursor={paged.body['next']}")
        assert {paged.body["items"][0]["id"], second.body["items"][0]["id"]} == {before[0]["id"], after[0]["id"]}
        assert second.body["next"] is None


async def test_paging_1000_documents_in_pages_of_37_exactly_once(api, installed):
    created = await create_all(api, "note", [{"title": f"note {i:04}"} for i in range(1000)])
    expected = {body["id"] for body in created}
    seen: list[str] = []
    path, pages, added = "/v1/note?limit=37", 0, []
    while path:
        reply = await api.request("GET", path)
        assert reply.status == 200
        seen += [item["id"] for item in reply.body["items"]]
        pages += 1
        if pages == 5:  # documents keep arriving during the walk
            added = await create_all(api, "note", [{"title": f"late {i}"} for i in range(10)])
        link = reply.headers.get("Link")
        assert (link is None) == (reply.body["next"] is None)
        path = link[1 : link.index(">")] if link else None
        assert pages < 100
    assert len(seen) == len(set(seen))  # nothing twice
    assert expected <= set(seen)  # everything that was there at the start
    assert set(seen) - expected <= {body["id"] for body in added}
    assert pages == len(seen) // 37 + (1 if len(seen) % 37 else 0)


async def test_tampered_or_foreign_cursors_are_400(api, installed):
    await create_all(api, "note", [{"title": f"t{i}"} for i in range(3)])
    first = await api.request("GET", "/v1/note?limit=1")
    cursor = first.body["next"]
    assert (await api.request("GET", f"/v1/note?limit=1&cursor={cursor}")).status == 200
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-1] ^= 1
    edited = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for bad in (edited, "not-a-cursor", cursor[:-4]):
        reply = await api.request("GET", f"/v1/note?limit=1&cursor={bad}")
        assert reply.status == 400 and reply.body["code"] == "invalid_query"
    other_query = await api.request("GET", f"/v1/note?limit=1&include_deleted=true&cursor={cursor}")
    assert other_query.status == 400 and "from another query" in other_query.body["detail"]


async def test_cursor_reveals_no_protected_value(api, installed):
    await create_all(api, "user", [{**ALICE, "email": f"a{i}@example.com"} for i in range(2)])
    page = await api.request("GET", f"/v1/user?email={quote('a0@example.com')}&limit=1")
    listing = await api.request("GET", "/v1/user?limit=1")
    for cursor in (page.body["next"], listing.body["next"]):
        if cursor:
            decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            assert b"example.com" not in decoded and b"sha3:" not in decoded and b"n0" not in decoded


async def test_tampered_document_is_omitted_from_a_page(api, installed, db):
    notes = await create_all(api, "note", [{"title": f"t{i}"} for i in range(3)])
    raw = await db.get(notes[1]["id"])
    await db.put({**raw, "title": "edited in CouchDB"})
    reply = await api.request("GET", "/v1/note", headers={"Cache-Control": "no-cache"})  # past the read cache
    assert {i["id"] for i in reply.body["items"]} == {notes[0]["id"], notes[2]["id"]}
    assert reply.body["omitted"] == [{"id": notes[1]["id"], "code": "integrity_violation"}]


async def test_query_values_never_reach_the_access_log(api, installed, caplog):
    caplog.set_level("INFO", logger="data_service.access")
    await create_all(api, "user", [{**ALICE, "email": "hidden.person@example.com"}])
    reply = await api.request("GET", f"/v1/user?email={quote('hidden.person@example.com')}")
    assert len(reply.body["items"]) == 1
    lines = [(r.getMessage(), r.fields) for r in caplog.records if r.name == "data_service.access"]
    assert ("GET /v1/{type} 200", "/v1/{type}") in [(message, fields["route"]) for message, fields in lines]
    assert not any("hidden" in str(line) for line in lines)
