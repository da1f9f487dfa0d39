"""The index warmer (``serve --warm-interval``): after writes, each design document's
index is brought up to date, one request at a time, and only when the database changed.
An index is current when a query that must not update it (``stale=ok``) already sees
every document.

The tests that count an index's rows are marked ``one_copy``: their database has one copy
per shard range. A pass's query is answered per range by the first copy whose index is
current; CouchDB may stop the other copies' requests before they start building, and a
``stale=ok`` query reads one fixed copy per range, which may be one of those (the background
indexer is left out here, so nothing else builds it). Which copies a replicated database builds is CouchDB's
fan-out, not the warmer's; that a caller's query finds a current copy is the same either way."""

from __future__ import annotations

import contextlib

import pytest
from support import SAMPLE_MODELS, install_design_docs, serving, until

from data_service.couchdb import CouchDB, Hooks
from data_service.couchdb.client import Attempt
from data_service.couchdb.transport import path
from data_service.design import VIEW, query_designs
from data_service.models import load_models
from data_service.store.warmer import Warmer

VIEWS = query_designs(load_models(SAMPLE_MODELS))  # what callers' queries read
LISTING = "ds_note_v1"  # the note type's listing: every note by creation time


class Recorder(Hooks):
    """Every request the warmer sends, and the most it had in flight at once."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.in_flight = self.most_in_flight = 0

    @contextlib.contextmanager
    def attempt(self, request):
        self.sent.append(f"{request.method} {request.path}")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            yield Attempt(request)
        finally:
            self.in_flight -= 1


async def notes(db, count: int) -> None:
    docs = [
        {"type": "note_v1.0", "meta": {"created_at": f"2026-01-01T00:00:{i:02d}Z"}, "title": "n"} for i in range(count)
    ]
    assert all(result.get("ok") for result in await db.bulk_docs(docs))


async def indexed(db, ddoc: str = LISTING) -> int:
    """How many rows the index holds now, without bringing it up to date."""
    return (await db.view(ddoc, VIEW, limit=0, stale="ok")).total_rows or 0


async def holds(db, rows: int) -> bool:
    """Whether the listing index holds ``rows`` rows now."""
    return await indexed(db) == rows


@pytest.fixture
async def quiet(couch, db):
    """CouchDB's own background indexer (ken) left out of ``db``'s shards on every node, so an
    index is built only by the queries the test makes (the dev server has none). Ken asks
    ``ken.ignore`` about each shard's own name (``shards/<range>/<db>.<suffix>``), never the
    database's."""
    if (await couch.server_info()).kind != "couchdb":
        yield
        return
    ignored = []
    for node in (await couch.membership())["all_nodes"]:
        for name in await couch.json("GET", path("_node", node, "_all_dbs")):
            if name.startswith("shards/") and name.rpartition(".")[0].endswith(f"/{db.name}"):
                ignored.append(path("_node", node, "_config", "ken.ignore", name))
                await couch.json("PUT", ignored[-1], json="true")
    yield
    for key in ignored:
        await couch.json("DELETE", key)


@pytest.fixture
async def recording(couchdb_url):
    """A client's recorded requests, and a function that makes a warmer of a database sending
    through that client."""
    recorder = Recorder()
    async with CouchDB(couchdb_url, hooks=recorder) as client:
        yield recorder, lambda database: Warmer(client.database(database.name), VIEWS)


def a_pass(db) -> list[str]:
    """The requests of a pass that runs, after the question whether anything changed."""
    return [f"GET /{db.name}"] + [f"GET /{db.name}/_design/{name}/_view/{VIEW}" for name in VIEWS]


@pytest.mark.one_copy
async def test_a_pass_brings_every_index_up_to_date_one_request_at_a_time(db, quiet, recording):
    recorder, warmer_for = recording
    warmer = warmer_for(db)
    await install_design_docs(db, guard=False)
    await notes(db, 30)
    assert await indexed(db) == 0  # CouchDB indexes on query: nothing asked yet

    assert await warmer.warm()
    assert recorder.sent == a_pass(db)
    assert recorder.most_in_flight == 1
    await until(lambda: holds(db, 30), "the listing index holds the 30 notes")


async def test_no_pass_until_the_database_changes(db, recording):
    recorder, warmer_for = recording
    warmer = warmer_for(db)
    await install_design_docs(db, guard=False)
    await notes(db, 3)
    assert await warmer.warm()

    async def quiet_pass():
        recorder.sent.clear()
        return not await warmer.warm()

    # on a cluster, a copy the pass's update_seq came from may still receive the notes
    # after it: that copy's changes bring one more pass. An unchanged cluster's update_seq
    # differs from one answer to the next, so a warmer comparing them would never rest
    await until(quiet_pass, "a pass that finds nothing changed")
    assert recorder.sent == [f"GET /{db.name}/_changes"]  # a change since the last pass? nothing else

    await notes(db, 2)
    # on a cluster the copies the last pass's update_seq names may get the notes a moment later
    await until(warmer.warm, "a pass once the database changed")
    assert recorder.sent[-len(a_pass(db)) - 1 :] == [f"GET /{db.name}/_changes", *a_pass(db)]


@pytest.mark.one_copy
async def test_serve_keeps_the_indexes_warm_after_writes_through_it(config, db, quiet, tmp_path, http):
    await install_design_docs(db)
    async with serving(config, tmp_path, "--warm-interval=0.2") as served:
        items = [{"op": "create", "body": {"title": f"note {i}"}} for i in range(20)]
        async with http.post(f"{served.base}/v1/note/_bulk", json={"items": items}) as resp:
            assert resp.status == 200

        await until(lambda: holds(db, 20), "the listing index holds the 20 notes without being queried")
