"""What the store reports to health checks and metrics (``store/readiness.py``,
``store/report.py``) on the in-memory CouchDB: a missing database, design documents
missing or outdated, a degraded cluster, database and index figures. (The in-memory
CouchDB has no view indexes: ``_design/<name>/_info`` is answered by a fault here; the
servers' own figures are tests/server/test_metrics.py's.)"""

from __future__ import annotations

import time

import pytest
from support import SAMPLE_MODELS, install_design_docs

from data_service import design
from data_service.couchdb import IdPool
from data_service.couchdb.memory import matching, memory_couch
from data_service.keys import KeysDir
from data_service.models import load_models
from data_service.protection import Keyring
from data_service.store import DocumentStore
from data_service.store.readiness import DatabaseMissing, NotInstalled
from data_service.store.report import UNAVAILABLE, _pending, _sizes

MODELS = load_models(SAMPLE_MODELS)


@pytest.fixture
async def store(keys_dir):
    async with memory_couch() as couch:
        yield DocumentStore(couch.database("db"), IdPool(couch), Keyring(KeysDir(keys_dir), "db"))


async def test_readiness_names_what_is_missing(store):
    with pytest.raises(DatabaseMissing) as missing:
        await store.readiness(MODELS)
    assert missing.value.detail == "database 'db' does not exist"
    await store.db.create()
    with pytest.raises(NotInstalled) as bare:
        await store.readiness(MODELS)
    assert "run data-service install" in bare.value.detail
    assert set(bare.value.extensions()["missing_design_docs"]) == set(design.design_docs(MODELS))
    await install_design_docs(store.db)
    report = await store.readiness(MODELS)
    assert report["status"] == "ok" and report["cluster"] == {"nodes": 1, "connected": 1}
    assert report["couchdb"] == {"kind": "couchdb", "version": "3.5.2"} and report["keys"] == "loaded"
    assert report["design_docs"]["current"] == len(design.design_docs(MODELS))
    [name] = [n for n in design.design_docs(MODELS) if n != design.GUARD_NAME][:1]
    old = await store.db.get(f"_design/{name}")
    await store.db.put({**old, "views": {}})
    with pytest.raises(NotInstalled) as outdated:
        await store.readiness(MODELS)
    assert outdated.value.extensions()["outdated_design_docs"] == [name] and "outdated: " in outdated.value.detail


async def test_readiness_is_degraded_after_a_write_no_race_explains_and_without_membership(store):
    await store.db.create()
    await install_design_docs(store.db)
    store.stats.last_copy_missing = time.monotonic()
    store.db.couch.transport.fail(matching("GET", "/_membership"), status=401)  # not a server admin
    report = await store.readiness(MODELS)
    assert report["status"] == "degraded" and report["cluster"] == {"nodes": "unavailable"}
    assert report["degraded"] == ["writes not stored on every copy (a copy unreachable) in the last 60 s"]
    store.stats.last_copy_missing = time.monotonic() - 61
    assert (await store.readiness(MODELS))["status"] == "ok"


async def test_the_database_report_says_unavailable_never_zero(store):
    with pytest.raises(DatabaseMissing):
        await store.database_report(MODELS)
    await store.db.create()
    await store.create(MODELS.get("note"), {"title": "t"})
    store.db.couch.transport.fail(matching("GET", r"/db/_design/[^/]+/_info"), status=404, times=None)  # no index
    report = await store.database_report(MODELS)
    assert report["database"] == "db" and report["doc_count"] == 1 and report["doc_del_count"] == 0
    assert set(report["sizes"]) == {"file", "active", "external"} and 0 <= report["fragmentation"] < 1
    assert report["design_docs"] and all(
        index == {"sizes": UNAVAILABLE, "updates_pending": UNAVAILABLE} for index in report["design_docs"].values()
    )


def test_index_figures_as_each_server_gives_them():
    assert _sizes({"file": 3, "active": 2, "external": 1}) == {"file": 3, "active": 2, "external": 1}
    assert _sizes({"file": 3}) == _sizes(None) == UNAVAILABLE
    assert _pending({"minimum": 1, "preferred": 2, "total": 3}) == {"minimum": 1, "preferred": 2, "total": 3}
    assert _pending(4) == {"total": 4} and _pending({}) == _pending("x") == UNAVAILABLE
