"""Stateful tests (hypothesis ``RuleBasedStateMachine``) of the store and the read cache on
the in-memory CouchDB: two workers of one sidecar (two ``DocumentStore``\\ s with their own
``Cache`` on one shared ``WriteCounters.shared(2)`` table and one set of document locks, as
``workers.py`` sets them up) in front of one ``MemoryServer``, their cache feeds driven by
the rules; beside them another sidecar and a member writing straight into CouchDB.

Rules: creates, replaces (with the ETag the worker's client saw last), patches with and
without If-Match and deletes through worker A or B; another sidecar's signed writes; a
member's edits, rollbacks and deletes; a purge and a re-insert at the same revision (the
same body, or a forged one); feed answers fetched, held and delivered late, a failed feed
(bypass) and a restarted one (flush); reads through A or B, cached or fresh, and reads
begun before other steps and answered after them.

Invariants (checked on every answer):
- no read begun after an acknowledged write through A or B answers an older revision, nor
  a body after an acknowledged delete, through either worker (the shared write counters);
- once a worker's feed delivered an answer, no read through it answers a revision older
  than the feed reported, a deleted document, or a tampered one; no write through it
  builds on a tampered one;
- a fresh read answers what CouchDB holds: the winner, or integrity_violation;
- nothing acknowledged is lost: the winner descends from every acknowledged write;
- a 412 never names a write that took effect.

Budget: the ``HYPOTHESIS_PROFILE`` (``states`` in ``make test``, ``long`` on demand;
docs/testing.md)."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from dataclasses import dataclass, field

import orjson
import pytest
from contracts.store_setup import roll_back
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule
from support import SAMPLE_MODELS

from data_service.cache import Cache, Entry, WriteCounters
from data_service.couchdb import IdPool, NotFound
from data_service.couchdb.client import path
from data_service.couchdb.memory import Fault, MemoryServer, memory_couch
from data_service.envelope import now
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import load_models
from data_service.protection import IntegrityViolation, Keyring
from data_service.revisions import generation
from data_service.store import ANY_REVISION, DocumentNotFound, DocumentStore, StaleRevision
from data_service.store.locks import DocLocks

NOTE = load_models(SAMPLE_MODELS).get("note")
settings.register_profile(
    "states",
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long", max_examples=2000, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "states"))
# Issue 22 row 4: a same-revision re-insert of a forged body is not noticed by a worker that
# has the document cached (fixed on branch ``cache``). Until then the machine re-inserts the
# same body only; test_a_forgery_reported_by_the_feed_* below keep the shortest examples.
FORGERIES_NOTICED = False
DOCUMENTS = 2  # at most: the rules meet on few documents
_KEYS: list[str] = []
WORKERS = st.sampled_from([0, 1])


def keys_dir() -> str:
    if not _KEYS:
        _KEYS.append(tempfile.mkdtemp(prefix="store-states-"))
        KeysDir(_KEYS[0]).create()
    return _KEYS[0]


@dataclass
class Truth:
    """What the rules know of one document (never read back from the store under test)."""

    floor: int = 0  # generation of the latest write acknowledged through A or B
    acked_delete: bool = False  # a delete acknowledged through A or B
    gone: bool = False  # deleted, through the sidecar or by a member
    tampered: bool = False  # changed by a member: every read of CouchDB must refuse it
    acknowledged: list[str] = field(default_factory=list)  # revisions acknowledged through A or B


@dataclass
class Known:
    """What a worker's feed delivered about one document: its state when the answer was read."""

    generation: int
    deleted: bool
    tampered: bool


@dataclass
class Worker:
    store: DocumentStore
    held: dict | None = None  # a feed answer fetched, not yet delivered
    held_asked: float = 0.0  # when it was asked for (the cache's clock)
    held_known: dict[str, Known] = field(default_factory=dict)
    known: dict[str, Known] = field(default_factory=dict)  # what its feed delivered
    seen: dict[str, str] = field(default_factory=dict)  # the ETag its client last saw, by id


class StoreStates(RuleBasedStateMachine):
    docs = Bundle("docs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.marks = itertools.count()
        self.truth: dict[str, Truth] = {}
        self.read_in_flight: tuple | None = None
        self.steps = 0

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    @initialize()
    def start(self) -> None:
        server = MemoryServer(seed=7)
        keys = Keyring(KeysDir(keys_dir()), "db")
        self.clients = [memory_couch(server) for _ in range(3)]
        self.run(self.clients[0].database("db").create())
        counters, locks = (
            WriteCounters.shared(2),
            DocLocks(),
        )  # one sidecar: shared write counters, one lock per document
        self.workers = [
            Worker(
                DocumentStore(
                    client.database("db"),
                    IdPool(client),
                    keys,
                    cache=Cache(1 << 20, counters.as_worker(index)),
                    locks=locks,
                    worker=index,
                )
            )
            for index, client in enumerate(self.clients[:2])
        ]
        self.outside = self.clients[2].database("db")  # another sidecar, a member
        self.other = Lifecycle(keys, "other-sidecar")
        for worker in self.workers:
            self.run(worker.store.feed._start())

    def teardown(self) -> None:
        if hasattr(self, "workers"):
            if self.read_in_flight is not None:
                self.read_in_flight[3].set()
                self.run(asyncio.gather(self.read_in_flight[2], return_exceptions=True))
            self.check_nothing_acknowledged_is_lost()
            for client in self.clients:
                self.run(client.aclose())
        self.loop.close()

    # -- what CouchDB holds ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Known]:
        known = {}
        for docid, truth in self.truth.items():
            doc = self.run(self.raw(docid))
            gen = generation(doc["_rev"]) if doc else 0
            known[docid] = Known(gen or 0, truth.gone or doc is None, truth.tampered)
        return known

    async def raw(self, docid: str) -> dict | None:
        rows = (await self.outside.all_docs(keys=[docid], include_docs=True)).rows
        return rows[0].get("doc") if rows else None

    def mark(self) -> str:
        return f"w{next(self.marks)}"

    # -- writes through the sidecar --------------------------------------------------------

    @precondition(lambda self: len(self.truth) < DOCUMENTS)
    @rule(target=docs, w=WORKERS)
    def create(self, w: int) -> str:
        self.steps += 1
        answer = self.run(self.workers[w].store.create(NOTE, {"title": self.mark()}))
        self.truth[answer.id] = Truth(generation(answer.rev) or 0, acknowledged=[answer.rev])
        self.workers[w].seen[answer.id] = answer.rev
        return answer.id

    def write(self, w: int, docid: str, how: str) -> None:
        worker, truth, marker = self.workers[w], self.truth[docid], self.mark()
        store, seen = worker.store, worker.seen.get(docid)
        if_match = frozenset({seen}) if seen else frozenset({ANY_REVISION})
        known = worker.known.get(docid)
        try:
            if how == "replace":
                answer = self.run(store.replace(NOTE, docid, {"title": marker}, if_match))
            elif how == "patch":
                answer = self.run(store.patch(NOTE, docid, {"title": marker}, if_match))
            elif how == "blind":
                answer = self.run(store.patch(NOTE, docid, {"title": marker}, None))
            else:
                answer = self.run(store.delete(NOTE, docid, if_match))
        except StaleRevision as stale:
            worker.seen[docid] = stale.rev
            self.check_not_taken_effect(docid, marker)
            return
        except (DocumentNotFound, IntegrityViolation):
            return
        assert not (known is not None and known.tampered), f"{docid}: worker {w} wrote on a tampered document"
        assert not answer.below_quorum
        worker.seen[docid] = answer.rev
        truth.floor = max(truth.floor, generation(answer.rev) or 0)
        truth.acknowledged.append(answer.rev)
        truth.tampered = False  # built on a cached parent the feed had not reported changed: the service's again
        if answer.deleted:
            truth.acked_delete = truth.gone = True
        else:
            assert orjson.loads(answer.body)["title"] == marker

    @rule(w=WORKERS, docid=docs, how=st.sampled_from(["replace", "patch", "blind", "delete"]))
    def write_through(self, w: int, docid: str, how: str) -> None:
        self.steps += 1
        self.write(w, docid, how)

    def check_not_taken_effect(self, docid: str, marker: str) -> None:
        leaves = self.run(self.outside.open_revs(docid))
        assert not [e for e in leaves if e.get("ok", {}).get("title") == marker], f"{docid}: a 412 for a stored write"

    # -- writes straight into CouchDB ------------------------------------------------------

    @precondition(lambda self: self.truth)
    @rule(docid=docs)
    def another_sidecar_writes(self, docid: str) -> None:
        self.steps += 1
        truth, doc = self.truth[docid], self.run(self.raw(docid))
        if doc is None or truth.tampered or truth.gone:
            return
        self.run(self.outside.put(self.other.patch(NOTE, doc, {"title": self.mark()}, {}, now()).doc))

    @rule(docid=docs, how=st.sampled_from(["edit", "roll back", "delete"]))
    def a_member_writes(self, docid: str, how: str) -> None:
        self.steps += 1
        truth, doc = self.truth[docid], self.run(self.raw(docid))
        if doc is None or truth.gone or truth.tampered:
            return
        if how == "edit":
            self.run(self.outside.put({**doc, "title": "Mallory"}))  # not signed again
            truth.tampered = True
        elif how == "delete":
            self.run(self.outside.delete(docid, doc["_rev"]))  # a bare tombstone: the document is gone
            truth.gone = True
        elif (old := self.run(self.older(docid))) is not None:
            self.run(roll_back(self.outside, docid, old))  # docs/consistency.md §3
            truth.tampered = True

    async def older(self, docid: str) -> dict | None:
        """The body of the winner's parent revision, if CouchDB still holds one."""
        history = (await self.outside.get(docid, revs=True))["_revisions"]
        if len(history["ids"]) < 2:
            return None
        try:
            return await self.outside.get(docid, rev=f"{history['start'] - 1}-{history['ids'][1]}")
        except NotFound:  # purged and put back: only the leaf has a body
            return None

    @rule(docid=docs, forged=st.booleans() if FORGERIES_NOTICED else st.just(False))
    def purged_and_put_back_at_the_same_revision(self, docid: str, forged: bool) -> None:
        self.steps += 1
        truth, doc = self.truth[docid], self.run(self.raw(docid))
        if doc is None or truth.gone or truth.tampered:
            return
        full = self.run(self.outside.get(docid, revs=True))
        self.run(self.outside.couch.json("POST", path("db", "_purge"), json={docid: [doc["_rev"]]}))
        back = {**full, "title": "forged"} if forged else full
        assert self.run(self.outside.bulk_docs([back], new_edits=False)) == []
        truth.tampered = truth.tampered or forged

    # -- the feeds ---------------------------------------------------------------------------

    def fetch(self, worker: Worker) -> None:
        if worker.held is None:
            worker.held_asked = worker.store.cache.clock()
            worker.held = self.run(worker.store.db.changes(since=worker.store.feed.seq, feed="normal"))
            worker.held_known = self.snapshot()

    def deliver(self, worker: Worker) -> None:
        if worker.held is not None:
            worker.store.feed.apply(worker.held, worker.held_asked)
            worker.known.update(worker.held_known)
            worker.held = None

    @rule(w=WORKERS)
    def feed_fetches(self, w: int) -> None:
        """The feed's poll is answered now; the answer reaches the worker later."""
        self.steps += 1
        self.fetch(self.workers[w])

    @rule(w=WORKERS)
    def feed_delivers(self, w: int) -> None:
        self.steps += 1
        self.deliver(self.workers[w])

    @rule(w=WORKERS)
    def feed_catches_up(self, w: int) -> None:
        """The feed's poll is answered and delivered (after the answer it held, if any)."""
        self.steps += 1
        worker = self.workers[w]
        self.deliver(worker)
        self.fetch(worker)
        self.deliver(worker)

    @rule(w=WORKERS)
    def feed_fails(self, w: int) -> None:
        """The poll failed: the cache is bypassed until the next answer (the held one is lost)."""
        self.steps += 1
        self.workers[w].held = None
        self.workers[w].store.cache.bypass()

    @rule(w=WORKERS)
    def feed_starts_over(self, w: int) -> None:
        self.steps += 1
        worker = self.workers[w]
        worker.held = None
        known = self.snapshot()
        self.run(worker.store.feed._start())
        worker.known.update(known)  # flushed: nothing older can be served

    # -- reads -------------------------------------------------------------------------------

    def expected(self, w: int, docid: str) -> tuple[int, bool, bool]:
        """(the oldest generation a read through ``w`` may answer now, whether it must answer
        no body at all, whether CouchDB's document is tampered)."""
        truth, known = self.truth[docid], self.workers[w].known.get(docid)
        floor = max(truth.floor, known.generation if known else 0)
        refused = truth.acked_delete or (known is not None and (known.deleted or known.tampered))
        return floor, refused, truth.tampered

    def observe(self, w: int, docid: str, answer, expected: tuple[int, bool, bool], fresh: bool) -> None:
        floor, refused, tampered = expected
        if isinstance(answer, Entry):
            gen = generation(answer.rev) or 0
            assert not refused, f"{docid}: served through worker {w} after its feed or a write said no"
            assert gen >= floor, f"{docid}: worker {w} served generation {gen}, older than {floor}"
            if fresh:
                assert not tampered, f"{docid}: a fresh read served a tampered document"
            self.workers[w].seen[docid] = answer.rev
        elif isinstance(answer, IntegrityViolation):
            assert tampered, f"{docid}: integrity_violation for a document nobody tampered with"
        else:
            assert isinstance(answer, DocumentNotFound), answer

    @rule(w=WORKERS, docid=docs, fresh=st.booleans())
    def read(self, w: int, docid: str, fresh: bool) -> None:
        self.steps += 1
        expected = self.expected(w, docid)
        try:
            answer = self.run(self.workers[w].store.get(NOTE, docid, fresh=fresh))
        except (DocumentNotFound, IntegrityViolation) as exc:
            answer = exc
        self.observe(w, docid, answer, expected, fresh)

    @precondition(lambda self: self.read_in_flight is None)
    @rule(w=WORKERS, docid=docs)
    def read_begins(self, w: int, docid: str) -> None:
        """A read whose CouchDB answer is held: later steps happen before it is answered."""
        self.steps += 1
        expected, gate = self.expected(w, docid), asyncio.Event()
        store = self.workers[w].store
        fault = store.db.couch.transport.inject(
            Fault(lambda r, d=f"/db/{docid}": r.method == "GET" and r.path == d, after=lambda _: gate.wait())
        )
        task = self.loop.create_task(store.get(NOTE, docid))
        self.run(until_either(task, fault))
        if fault.hits:
            self.read_in_flight = (w, docid, task, gate, expected)
            return
        store.db.couch.transport.faults.remove(fault)  # answered from the cache
        self.finish(w, docid, task, expected)

    @precondition(lambda self: self.read_in_flight is not None)
    @rule()
    def read_answered(self) -> None:
        self.steps += 1
        w, docid, task, gate, expected = self.read_in_flight
        self.read_in_flight = None
        gate.set()
        self.finish(w, docid, task, expected)

    def finish(self, w: int, docid: str, task: asyncio.Task, expected) -> None:
        try:
            answer = self.run(task)
        except (DocumentNotFound, IntegrityViolation) as exc:
            answer = exc
        self.observe(w, docid, answer, expected, False)

    # -- what holds after every step -----------------------------------------------------------

    @invariant()
    def nothing_acknowledged_is_lost(self) -> None:
        if hasattr(self, "workers") and self.steps % 5 == 0:
            self.check_nothing_acknowledged_is_lost()

    def check_nothing_acknowledged_is_lost(self) -> None:
        for docid, truth in self.truth.items():
            doc = self.run(self.raw(docid)) if not (truth.tampered or truth.gone) else None
            if doc is None:
                continue
            [history] = self.run(self.outside.open_revs(docid, [doc["_rev"]], history=True))
            ids = history["ok"]["_revisions"]
            held = {f"{ids['start'] - n}-{rev}" for n, rev in enumerate(ids["ids"])}
            lost = [rev for rev in truth.acknowledged if rev not in held]
            assert not lost, f"{docid}: acknowledged {lost} not in the winner's history"


async def until_either(task: asyncio.Task, fault: Fault) -> None:
    for _ in range(1000):
        if task.done() or fault.hits:
            return
        await asyncio.sleep(0)
    raise AssertionError("the read neither hit CouchDB nor finished")


TestStoreStates = StoreStates.TestCase
TestStoreStates.settings = PROFILE


# -- the shortest examples of the read cache's holes that were (issue 22 rows 2 and 4) ----


def replay(steps) -> None:
    """Run ``steps(state)`` on a fresh machine, as hypothesis prints a failing example."""
    state = StoreStates()
    state.start()
    try:
        steps(state)
    finally:
        state.teardown()


def test_a_read_begun_before_a_write_never_stores_the_older_version_after_it():
    """Issue 22 row 2. Failed before the fix: worker 0 served generation 2, older than 3 (its own
    acknowledged write), for good: the read stored its older result after the write."""

    def steps(state: StoreStates) -> None:
        doc = state.create(w=0)
        state.another_sidecar_writes(docid=doc)  # generation 2, reported to worker 0 by its feed
        state.feed_catches_up(w=0)
        state.read_begins(w=0, docid=doc)  # reads generation 2; its answer is held
        state.write_through(w=0, docid=doc, how="blind")  # generation 3, acknowledged
        state.read_answered()  # stores generation 2
        state.read(w=0, docid=doc, fresh=False)

    replay(steps)


def forged_after_the_echo(state: StoreStates) -> str:
    """A worker's own write, echoed by its feed; then a forged body re-inserted at the same
    revision (after a purge), and the feed's report of that."""
    doc = state.create(w=0)
    state.feed_catches_up(w=0)  # the echo of its own write
    state.purged_and_put_back_at_the_same_revision(docid=doc, forged=True)
    state.feed_catches_up(w=0)
    return doc


def test_a_forgery_at_the_same_revision_reported_by_the_feed_is_never_served():
    """Issue 22 row 4. Failed before the fix: served through worker 0 after its feed reported the change."""
    replay(lambda state: state.read(w=0, docid=forged_after_the_echo(state), fresh=False))


def test_a_forgery_at_the_same_revision_reported_by_the_feed_is_never_written_over():
    """Issue 22 row 4. Failed before the fix: worker 0 wrote on a tampered document (the write named the
    cached revision, so nothing was read first: the evidence is overwritten)."""
    replay(lambda state: state.write_through(w=0, docid=forged_after_the_echo(state), how="replace"))


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="issue 22 row 4: a forgery re-inserted before the "
    "feed echoed the worker's own write arrives in the same report and is taken for the echo",
)
def test_a_forgery_made_before_the_echo_of_the_workers_own_write_is_never_served():
    """Issue 22 row 4. CouchDB's ``_changes`` lists a document once, at its latest
    sequence: the worker's own write and the re-insert over it are one report."""

    def steps(state: StoreStates) -> None:
        doc = state.create(w=0)
        state.purged_and_put_back_at_the_same_revision(docid=doc, forged=True)
        state.feed_catches_up(w=0)
        state.read(w=0, docid=doc, fresh=False)

    replay(steps)


def test_a_read_begun_before_another_workers_write_never_stores_the_older_version_after_it():
    """Issue 22 row 2, across workers (found by the ``long`` budget). Failed before the fix: worker 1
    served generation 1 after worker 0's acknowledged write of generation 2."""

    def steps(state: StoreStates) -> None:
        doc = state.create(w=0)
        state.feed_catches_up(w=1)  # worker 1's feed reports generation 1
        state.read_begins(w=1, docid=doc)  # reads generation 1; its answer is held
        state.write_through(w=0, docid=doc, how="blind")  # generation 2, acknowledged by worker 0
        state.read_answered()  # worker 1 stores generation 1
        state.read(w=1, docid=doc, fresh=False)

    replay(steps)


def test_a_read_begun_before_a_deletion_the_feed_reported_never_stores_the_older_version():
    """Issue 22 row 2, with a deletion (found by the ``long`` budget). Failed before the fix: served through
    worker 1 after its feed reported the document deleted (``Cache.changed(id, None)`` left
    the revision reported before it as the last one, so the read's one extra write count passed)."""

    def steps(state: StoreStates) -> None:
        doc = state.create(w=0)
        state.feed_catches_up(w=1)
        state.read_begins(w=1, docid=doc)
        state.a_member_writes(docid=doc, how="delete")
        state.feed_catches_up(w=1)  # reports the deletion
        state.read_answered()
        state.read(w=1, docid=doc, fresh=False)

    replay(steps)
