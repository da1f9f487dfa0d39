"""Between and most-recent queries: two bounds on one field, ``meta.created_at`` /
``meta.updated_at`` in sort, ranges and compound indexes — keyset paging stays exact
over 1,000 documents."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from openapi_check import SpecChecker
from support import ROOT, Api, install_design_docs, running_app

pytestmark = pytest.mark.one_copy  # query semantics, not replica lag

MODELS = ROOT / "tests" / "query_models.yaml"
COUNT = 1000


@pytest.fixture
async def posts(config, db, http):
    """A sidecar with the query models and 1,000 posts (scores 0..999; owners ann and bob)."""
    await install_design_docs(db, MODELS)
    async with running_app(replace(config, models_path=str(MODELS))) as (base, _):
        async with http.get(f"{base}/openapi.json") as resp:
            api = Api(http, base, SpecChecker(await resp.json()))
        gate = asyncio.Semaphore(20)

        async def create(i: int) -> dict:
            async with gate:
                reply = await api.request("POST", "/v1/post", json={"owner": "ann" if i % 4 else "bob", "score": i})
                assert reply.status == 201
                return reply.body

        yield api, await asyncio.gather(*(create(i) for i in range(COUNT)))


async def walk(api, path: str, limit: int = 37) -> list[dict]:
    """Every page of a query, following ``next``; no document twice."""
    items, cursor = [], None
    while True:
        reply = await api.request("GET", f"{path}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert reply.status == 200, reply.body
        items += reply.body["items"]
        cursor = reply.body["next"]
        if cursor is None:
            ids = [item["id"] for item in items]
            assert len(ids) == len(set(ids))
            return items


def created(item: dict) -> str:
    return item["meta"]["created_at"]


async def test_between_two_bounds_pages_exactly(posts):
    api, docs = posts
    got = await walk(api, "/v1/post?score[gte]=100&score[lt]=700")
    assert [item["score"] for item in got] == list(range(100, 700))
    exclusive = await walk(api, "/v1/post?score[gt]=100&score[lte]=700&sort=-score", limit=50)
    assert [item["score"] for item in exclusive] == list(range(700, 100, -1))
    empty = await api.request("GET", "/v1/post?score[gte]=700&score[lt]=100")  # bounds the wrong way round
    assert empty.status == 200 and empty.body["items"] == [] and empty.body["next"] is None


async def test_most_recent_of_an_owner_and_the_listing_either_way(posts):
    api, docs = posts
    ann = sorted((d for d in docs if d["owner"] == "ann"), key=lambda d: (created(d), d["id"]), reverse=True)
    recent = await walk(api, "/v1/post?owner=ann&sort=-meta.created_at")
    assert [item["id"] for item in recent] == [d["id"] for d in ann]
    top = await api.request("GET", "/v1/post?owner=bob&sort=-meta.created_at&limit=1")
    newest = max((d for d in docs if d["owner"] == "bob"), key=lambda d: (created(d), d["id"]))  # ties: by id
    assert top.body["items"][0]["id"] == newest["id"]
    oldest_first = await walk(api, "/v1/post?sort=meta.created_at", limit=97)
    newest_first = await walk(api, "/v1/post?sort=-meta.created_at", limit=97)
    assert [created(item) for item in oldest_first] == sorted(created(d) for d in docs)
    assert [item["id"] for item in newest_first] == [item["id"] for item in reversed(oldest_first)]


async def test_ranges_on_creation_time(posts):
    api, docs = posts
    times = sorted(created(d) for d in docs)
    low, high = times[200], times[800]
    window = await walk(api, f"/v1/post?meta.created_at[gte]={low}&meta.created_at[lt]={high}")
    assert sorted(item["id"] for item in window) == sorted(d["id"] for d in docs if low <= created(d) < high)
    owned = await walk(api, f"/v1/post?owner=ann&meta.created_at[gt]={low}&sort=-meta.created_at")
    assert {item["id"] for item in owned} == {d["id"] for d in docs if d["owner"] == "ann" and created(d) > low}


async def test_most_recently_updated(posts):
    api, docs = posts
    touched = [docs[7], docs[500], docs[3]]
    for doc in touched:  # one after another: their update times are ordered
        reply = await api.request(
            "PATCH",
            f"/v1/post/{doc['id']}",
            data=b'{"title": "touched"}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert reply.status == 200
    latest = await api.request("GET", "/v1/post?sort=-meta.updated_at&limit=3")
    assert [item["id"] for item in latest.body["items"]] == [d["id"] for d in reversed(touched)]
    unknown = await api.request("GET", "/v1/post?owner=ann&sort=-meta.updated_at")
    assert unknown.status == 400 and "[owner, meta.created_at]" in unknown.body["detail"]
