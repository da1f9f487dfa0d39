"""``reencrypt`` and ``migrate`` work in pipelined pages (the next page read while earlier
ones are written, a few writes in flight), on the in-memory CouchDB: a document another
sidecar changes while its page is in flight is read again and redone — its change is
kept, never overwritten by the stale copy — and the writes of several pages really are
in flight together."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from support import ROOT, SAMPLE_MODELS

from data_service.couchdb import IdPool
from data_service.couchdb.memory import Fault, MemoryServer, matching, memory_couch
from data_service.keys import PURPOSES, KeysDir
from data_service.maintenance import migrate_database, reencrypt_database
from data_service.models import load_models
from data_service.progress import Progress
from data_service.protection import Keyring
from data_service.store import DocumentStore

NOTE = load_models(SAMPLE_MODELS).get("note")
MEMBER_V1 = load_models(ROOT / "tests" / "migration_models_v1.yaml").get("member")
MODELS_V2 = load_models(ROOT / "tests" / "migration_models_v2.yaml")
WRITES = matching("POST", r"/db/_bulk_docs")
PAGES = matching("GET", r"/db/_all_docs")
BATCH = 10


@pytest.fixture
async def server() -> MemoryServer:
    return MemoryServer()


async def a_store(server: MemoryServer, keys: Path) -> DocumentStore:
    couch = memory_couch(server, record=True)
    return DocumentStore(couch.database("db"), IdPool(couch), Keyring(KeysDir(keys), "db"))


@pytest.fixture
async def old(server, tmp_path) -> DocumentStore:
    """A sidecar writing with the keys of before the rotation, and models version 1."""
    KeysDir(tmp_path / "old").create()
    store = await a_store(server, tmp_path / "old")
    await store.db.create()
    yield store
    await store.db.couch.aclose()


@pytest.fixture
async def new(server, tmp_path, old) -> DocumentStore:
    """The job's side: the same keysets, each with a new primary key."""
    keys = KeysDir(tmp_path / "new")
    keys.directory.mkdir(mode=0o700)
    for purpose in PURPOSES:
        keys.path(purpose).write_bytes(KeysDir(tmp_path / "old").path(purpose).read_bytes())
        keys.path(purpose).chmod(0o600)
        keys.promote(purpose, keys.rotate(purpose))
    store = await a_store(server, tmp_path / "new")
    yield store
    await store.db.couch.aclose()


async def run_job(job: str, store: DocumentStore, total: int):
    progress = Progress(job, total, out=io.StringIO())
    if job == "reencrypt":
        return await reencrypt_database(store.db, store.lifecycle, load_models(SAMPLE_MODELS), progress, batch=BATCH)
    return await migrate_database(store.db, store.lifecycle, MODELS_V2, progress, batch=BATCH)


async def fill(job: str, old: DocumentStore, count: int) -> list[str]:
    model, body = (NOTE, {"title": "before"}) if job == "reencrypt" else (MEMBER_V1, {"nick": "before"})
    return sorted([(await old.create(model, body)).id for _ in range(count)])


@pytest.mark.parametrize("job", ["reencrypt", "migrate"])
async def test_a_document_changed_while_its_page_is_in_flight_is_redone_not_overwritten(job, old, new):
    ids = await fill(job, old, 3 * BATCH + 5)
    victim = ids[3]  # on the first page
    model, change = (NOTE, {"title": "changed"}) if job == "reencrypt" else (MEMBER_V1, {"nick": "changed"})

    async def another_sidecar_writes(request) -> None:
        current = await old.db.get(victim)
        await old.replace(model, victim, change, frozenset({current["_rev"]}))

    race = new.db.couch.transport.inject(Fault(WRITES, before=another_sidecar_writes))
    report = await run_job(job, new, len(ids))

    assert race.hits == 1 and not report.skipped
    assert (report.rewritten if job == "reencrypt" else report.migrated) == len(ids)
    stored = await new.db.get(victim)
    new.lifecycle.check_signature(stored)
    assert new.lifecycle.keys.is_current(stored)
    if job == "reencrypt":
        assert stored["title"] == "changed"
    else:
        assert stored["type"] == "member_v2.0" and stored["name"] == "changed"
    for docid in ids:  # every other document once, over the revision it was read at
        doc = await new.db.get(docid)
        assert doc["_rev"].startswith("3-" if docid == victim else "2-"), (docid, doc["_rev"])


@pytest.mark.parametrize("job", ["reencrypt", "migrate"])
async def test_the_next_pages_are_read_and_written_while_the_first_is_written(job, old, new):
    ids = await fill(job, old, 4 * BATCH)
    second_write = asyncio.Event()
    pages_read_before_it = []

    async def first_write(request) -> None:
        # answered only once a later page's write has arrived: one write at a time never finishes
        await asyncio.wait_for(second_write.wait(), timeout=10)

    async def later_write(request) -> None:
        pages_read_before_it.append(sum(1 for r in new.db.couch.transport.requests if PAGES(r)))
        second_write.set()

    transport = new.db.couch.transport
    transport.inject(Fault(WRITES, before=first_write))
    transport.inject(Fault(WRITES, before=later_write))
    report = await run_job(job, new, len(ids))

    assert not report.skipped and (report.rewritten if job == "reencrypt" else report.migrated) == len(ids)
    assert pages_read_before_it and pages_read_before_it[0] >= 3  # pages 1 and 2, and page 3 read ahead
