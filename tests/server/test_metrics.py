"""``/_metrics``, ``/_metrics/database`` and the readiness design-doc check, against the
running sidecar and a real CouchDB-API server."""

from __future__ import annotations

from dataclasses import replace

from support import ROOT, install_design_docs, running_sidecar, unique_name
from support.metrics import samples

from data_service import design
from data_service.models import load_models

MODELS = load_models(str(ROOT / "models" / "sample.yaml"))
DESIGN_DOCS = design.design_docs(MODELS)
VIEW_DOCS = sorted(name for name, doc in DESIGN_DOCS.items() if "views" in doc)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def scrape(http, base: str) -> dict:
    """Every sample of ``/_metrics``: (name, labels) → value."""
    async with http.get(f"{base}/_metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == CONTENT_TYPE
        text = await resp.text()
    return samples(text)


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# --- /_metrics ------------------------------------------------------------------


async def test_metrics_text_counts_requests_by_route_never_by_id(api, http, sidecar):
    before = await scrape(http, sidecar)
    ids = [(await api.request("POST", "/v1/note", json={"title": f"n{i}"})).body["id"] for i in range(3)]
    for docid in ids[:2]:  # past the read cache (which holds what was just written): CouchDB is asked
        assert (await api.request("GET", f"/v1/note/{docid}", headers={"Cache-Control": "no-cache"})).status == 200
    async with http.get(f"{sidecar}/nowhere/{ids[0]}") as resp:
        assert resp.status == 404
    after = await scrape(http, sidecar)

    requests = "data_service_http_requests_total"
    assert delta(before, after, requests, route="/v1/{type}", method="POST", status="201") == 3
    assert delta(before, after, requests, route="/v1/{type}/{id}", method="GET", status="200") == 2
    assert delta(before, after, requests, route="unmatched", method="GET", status="404") == 1
    assert (
        delta(before, after, "data_service_http_request_duration_seconds_count", route="/v1/{type}", method="POST") == 3
    )
    written = delta(
        before, after, "data_service_couchdb_requests_total", operation="bulk_docs", method="POST", status="201"
    )
    assert written >= 3
    assert delta(before, after, "data_service_couchdb_requests_total", operation="doc", method="GET", status="200") >= 2
    assert value(after, "data_service_couchdb_requests_total", operation="uuids", method="GET", status="200") >= 1

    labels = {v for _, pairs in after for _, v in pairs}
    assert not [label for label in labels if any(docid in label for docid in ids)]
    assert not [label for label in labels if label.startswith("/nowhere")]

    assert value(after, "data_service_id_pool_size") > 0  # a batch of _uuids, three taken
    assert value(after, "data_service_bcrypt_queue_depth") == 0
    for counter in ("integrity_violations", "stale_revisions", "patch_retries", "write_conflicts"):
        assert (f"data_service_{counter}_total", frozenset()) in after


async def test_metrics_response_matches_the_spec(api, http, sidecar):
    async with http.get(f"{sidecar}/_metrics") as resp:
        api.checker.check("GET", "/_metrics", resp.status, resp.headers, await resp.read())
    async with http.post(f"{sidecar}/_metrics", data=b"") as resp:
        api.checker.check("POST", "/_metrics", resp.status, resp.headers, await resp.read())
        assert resp.status == 405


async def test_stale_revision_and_integrity_violation_counters(api, http, sidecar, db):
    created = await api.request("POST", "/v1/note", json={"title": "a"})
    docid = created.body["id"]
    before = await scrape(http, sidecar)

    replaced = await api.request("PUT", f"/v1/note/{docid}", json={"title": "b"}, headers={"If-Match": created.etag})
    assert replaced.status == 200
    stale = await api.request("PUT", f"/v1/note/{docid}", json={"title": "c"}, headers={"If-Match": created.etag})
    assert stale.status == 412
    middle = await scrape(http, sidecar)
    assert delta(before, middle, "data_service_stale_revisions_total") == 1
    assert delta(before, middle, "data_service_integrity_violations_total") == 0

    raw = await db.get(docid)
    await db.put({**raw, "title": "forged"})  # edited behind the sidecar's back
    fresh = {"Cache-Control": "no-cache"}  # right after the edit: past the read cache
    assert (await api.request("GET", f"/v1/note/{docid}", headers=fresh)).status == 500
    after = await scrape(http, sidecar)
    assert delta(middle, after, "data_service_integrity_violations_total") == 1
    assert (
        delta(middle, after, "data_service_http_requests_total", route="/v1/{type}/{id}", method="GET", status="500")
        == 1
    )


# --- /_metrics/database -----------------------------------------------------------


async def test_database_metrics_counts_docs_and_reports_what_the_server_knows(api, couch, db):
    for i in range(4):
        assert (await api.request("POST", "/v1/note", json={"title": f"n{i}"})).status == 201
    reply = await api.request("GET", "/_metrics/database")
    assert reply.status == 200
    body = reply.body
    assert body["database"] == db.name and body["doc_count"] == 4
    assert sorted(body["design_docs"]) == VIEW_DOCS and design.GUARD_NAME not in body["design_docs"]
    # Not installed: no index anywhere, so nothing to report, and never zeros.
    assert all(
        entry == {"sizes": "unavailable", "updates_pending": "unavailable"} for entry in body["design_docs"].values()
    )
    if (await couch.server_info()).kind == "couchdb":
        assert set(body["sizes"]) == {"file", "active", "external"}
        assert all(isinstance(v, int) for v in body["sizes"].values())
        assert isinstance(body["fragmentation"], float) and 0 <= body["fragmentation"] <= 1
        assert body["doc_del_count"] == 0
    else:
        assert body["sizes"] == "unavailable" and body["fragmentation"] is None


async def test_database_metrics_per_view_once_installed(api, couch, db):
    await install_design_docs(db)
    await db.view(VIEW_DOCS[0], design.VIEW, limit=1)  # build one index
    body = (await api.request("GET", "/_metrics/database")).body
    assert sorted(body["design_docs"]) == VIEW_DOCS
    for entry in body["design_docs"].values():
        if (await couch.server_info()).kind == "couchdb":
            assert all(isinstance(v, int) for v in entry["sizes"].values())
            assert isinstance(entry["updates_pending"]["total"], int)
        else:  # pouchdb-server's _info is a stub
            assert entry == {"sizes": "unavailable", "updates_pending": "unavailable"}


async def test_database_metrics_are_cached(api, http, sidecar):
    await api.request("POST", "/v1/note", json={"title": "the first write asks how many copies the database keeps"})
    before = await scrape(http, sidecar)
    first = await api.request("GET", "/_metrics/database")
    await api.request("POST", "/v1/note", json={"title": "not seen for a few seconds"})
    second = await api.request("GET", "/_metrics/database")
    after = await scrape(http, sidecar)
    assert first.body == second.body
    couchdb = "data_service_couchdb_requests_total"
    assert delta(before, after, couchdb, operation="design_info", method="GET", status="200") + delta(
        before, after, couchdb, operation="design_info", method="GET", status="404"
    ) == len(VIEW_DOCS)
    assert delta(before, after, couchdb, operation="db", method="GET", status="200") == 1


async def test_database_metrics_missing_database_is_503(config, http):
    async with running_sidecar(replace(config, database=unique_name("absent"))) as base:
        async with http.get(f"{base}/_metrics/database") as resp:
            body = await resp.json(content_type=None)
    assert resp.status == 503 and body["code"] == "database_missing"


# --- readiness ----------------------------------------------------------------------


async def test_readiness_requires_current_design_docs(api, db):
    missing = await api.request("GET", "/_health?quick=false")
    assert missing.status == 503 and missing.headers["Retry-After"] == "1"
    assert missing.body["code"] == "not_installed" and missing.body["retryable"] is True
    assert sorted(missing.body["missing_design_docs"]) == sorted(DESIGN_DOCS)
    assert missing.body["outdated_design_docs"] == []
    assert "ds_conflicts" in missing.body["detail"]

    await install_design_docs(db)
    ready = await api.request("GET", "/_health?quick=false")
    assert ready.status == 200
    assert ready.body["design_docs"] == {"current": len(DESIGN_DOCS)} and ready.body["keys"] == "loaded"
    assert ready.body["database"]["name"] == db.name

    name = VIEW_DOCS[0]
    installed = await db.get(f"_design/{name}")
    installed["views"][design.VIEW]["map"] = "function (doc) { emit(doc._id, null); }"
    await db.put(installed)  # same marker, different content
    outdated = await api.request("GET", "/_health?quick=false")
    assert outdated.status == 503 and outdated.body["code"] == "not_installed"
    assert outdated.body["outdated_design_docs"] == [name] and outdated.body["missing_design_docs"] == []
    assert name in outdated.body["detail"]
