"""What the store contracts share (``store_*.py``): the models, a store on the backend's
database, and the ways someone with write access to the database changes it behind the
store's back — a concurrent leaf (replication style), an edit, a member's rollback.

Each contract class mixes in ``StoreSetup``; a tier subclasses the contract once, with
``OnMemory`` (tests/unit) or without (tests/server), as for the CouchDB contracts."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support import ROOT, SAMPLE_MODELS, single_copy_database

from data_service.couchdb import Database, IdPool, Request
from data_service.couchdb.client import Attempt, Hooks, path
from data_service.envelope import Removed, now
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import load_models
from data_service.protection import Keyring
from data_service.store import DocumentStore

SAMPLE = load_models(SAMPLE_MODELS)
NOTE, USER = SAMPLE.get("note"), SAMPLE.get("user")  # deleted hard; deleted soft, with protected values
MEMBER_V1 = load_models(ROOT / "tests" / "migration_models_v1.yaml").get("member")
MEMBER_V2 = load_models(ROOT / "tests" / "migration_models_v2.yaml").get("member")
PAST, FUTURE = "2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z"


async def no_sleep(_: float) -> None:
    return None


class Requests(Hooks):
    """Every request the client sends, as (method, path), in ``sent``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def attempt(self, request: Request) -> Iterator[Attempt]:
        self.sent.append((request.method, request.path))
        yield Attempt(request)

    def count(self, method: str, tail: str) -> int:
        return sum(1 for m, p in self.sent if m == method and p.endswith(tail))


class StoreSetup:
    @pytest.fixture
    async def db(self, couch):
        """One copy: merge semantics, not replica lag (``support.single_copy_database``)."""
        async with single_copy_database(couch) as database:
            yield database

    @pytest.fixture
    def ring(self, keys_dir, db) -> Keyring:
        """The keys the database's sidecars sign with."""
        return Keyring(KeysDir(keys_dir), db.name)

    @pytest.fixture
    def store(self, db, ring) -> DocumentStore:
        return new_store(db, ring, "w-store")

    @pytest.fixture
    def other(self, ring) -> Lifecycle:
        """Another sidecar of the deployment, writing straight into CouchDB."""
        return Lifecycle(ring, "w-other")

    @pytest.fixture
    def requests(self, db) -> Requests:
        """What ``db``'s client sends from now on."""
        db.couch.hooks = Requests()
        return db.couch.hooks


def new_store(db: Database, ring: Keyring, writer: str, **options: Any) -> DocumentStore:
    """A sidecar's store (its own document locks: two stores are two sidecars)."""
    return DocumentStore(db, IdPool(db.couch), ring, writer=writer, sleep=no_sleep, **options)


async def created(store: DocumentStore, model, body: dict) -> dict:
    """Create through the store; the stored document as the store reads it."""
    return await store.read(model, (await store.create(model, body)).id)


def edited(lifecycle: Lifecycle, model, current: dict, changes: dict, at: str | None = None) -> dict:
    """``current`` after ``lifecycle``'s merge patch of ``changes``, signed for the next
    generation (``_rev`` still ``current``'s)."""
    return lifecycle.patch(model, current, changes, {}, at or now()).doc


async def history(db: Database, docid: str, rev: str) -> list[str]:
    """The revision ids from ``rev``'s down to the root's."""
    [entry] = await db.open_revs(docid, [rev], history=True)
    return entry["ok"]["_revisions"]["ids"]


async def tombstone_on(db: Database, lifecycle: Lifecycle | None, leaf: dict, removed: Removed, at=None) -> str:
    """A tombstone written on ``leaf`` (replication style): signed by ``lifecycle`` for
    ``removed``, or (``lifecycle`` None) a bare one, as a member's ``DELETE`` makes."""
    ids = await history(db, leaf["_id"], leaf["_rev"])
    digest, generation = uuid.uuid4().hex, int(leaf["_rev"].split("-")[0]) + 1
    body = lifecycle.tombstone(leaf, removed, at) if lifecycle else {"_id": leaf["_id"], "_deleted": True}
    doc = {**body, "_rev": f"{generation}-{digest}", "_revisions": {"start": generation, "ids": [digest, *ids]}}
    assert await db.bulk_docs([doc], new_edits=False) == []
    return doc["_rev"]


async def leaves(db: Database, docid: str) -> list[dict]:
    return [entry["ok"] for entry in await db.open_revs(docid) if "ok" in entry]


async def live_leaves(db: Database, docid: str) -> list[dict]:
    return [leaf for leaf in await leaves(db, docid) if not leaf.get("_deleted")]


async def roll_back(db: Database, docid: str, old: dict) -> str:
    """Put ``old`` (a revision as it was read then) back as the winner the way a member
    can (docs/consistency.md §3): a new branch at its generation under its real parent,
    then every newer live leaf deleted. The new branch's revision."""
    every = await db.couch.json("GET", path(db.name, docid), params={"open_revs": "all", "revs": "true"})
    ids = max((entry["ok"] for entry in every), key=lambda leaf: leaf["_revisions"]["start"])["_revisions"]
    generation, fake = int(old["_rev"].split("-")[0]), uuid.uuid4().hex
    ancestors = ids["ids"][ids["start"] - generation + 1 :]
    branch = {**old, "_rev": f"{generation}-{fake}", "_revisions": {"start": generation, "ids": [fake, *ancestors]}}
    assert await db.bulk_docs([branch], new_edits=False) == []
    for leaf in await live_leaves(db, docid):
        if int(leaf["_rev"].split("-")[0]) > generation:
            await db.delete(docid, leaf["_rev"])
    assert (await db.get(docid))["_rev"] == branch["_rev"]  # CouchDB serves the old body now
    return branch["_rev"]
