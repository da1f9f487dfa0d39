"""Typed documents in CouchDB: the store's one face to the web layer, the installer and
the background jobs.

Reads go through ``reads`` (what CouchDB holds), the reconciler when a document has
conflicts or deleted leaves above its winner, and ``Lifecycle.open`` (verified first);
every write — one document or a bulk request — through the one pipeline (``writes``).
Ids come from the ``_uuids`` pool and documents are created with ``_bulk_docs`` asking
every copy, so a retried create never duplicates. Callers get ``Answer``\\ s, never
stored documents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..cache import Cache, Entry
from ..conflicts.bookkeeping import new_writer_id
from ..couchdb import Database, IdPool, NotFound
from ..lifecycle import Lifecycle, Op
from ..models import Models, ModelType, ValidationFailed, Violation, pointer
from ..protection import Keyring
from ..query import Query
from ..retry import RetryPolicy
from ..vocabulary import JSONObject, Representation, Stored
from .cachefeed import CacheFeed
from .change import ANY_REVISION, Change
from .changes import Changes, read_changes
from .claims import Claims
from .hashing import Hasher
from .locks import DocLocks
from .queries import CachedDocs, run_query
from .readiness import DatabaseMissing, readiness
from .reconciler import Reconciler
from .report import database_report
from .results import Answer, Page, Stats
from .writes import Writes

Revisions = frozenset[str]  # the revisions an If-Match accepts; ANY_REVISION for "*"
__all__ = ["ANY_REVISION", "DocumentStore", "Revisions"]


class DocumentStore:
    def __init__(
        self,
        db: Database,
        ids: IdPool,
        keys: Keyring,
        hasher: Hasher | None = None,
        retry: RetryPolicy = RetryPolicy(attempts=30, base=0.01, cap=0.25),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        writer: str | None = None,
        idempotency_ttl: float = 86400.0,
        cursor_ttl: float = 3600.0,
        cache: Cache | None = None,
        locks: DocLocks | None = None,
        worker: int = 0,
    ) -> None:
        """``keys`` are loaded for this database's deployment (``Keyring``); ``writer``
        names this process in counters' metadata (random by default; never share one
        between processes); ``retry`` bounds the write rounds (re-applied PATCHes);
        ``idempotency_ttl``: seconds an Idempotency-Key is remembered; ``cursor_ttl``:
        seconds a query's ``next`` cursor stays valid; ``cache``: the read cache (off
        without one; it serves only while a ``CacheFeed`` keeps it live); ``locks``: one
        writer per document across the sidecar's workers; ``worker``: which of its
        processes this is (a metrics label)."""
        self.db, self.ids, self.worker = db, ids, worker
        self.cache = cache if cache is not None else Cache(0)
        self.feed = CacheFeed(db, self.cache)
        self.lifecycle = Lifecycle(keys, writer or new_writer_id())
        self.hasher = hasher or Hasher()  # bounded: a full queue answers 503 busy
        self.cursor_ttl = cursor_ttl
        self.stats = Stats()
        self.reconciler = Reconciler(db, self.lifecycle, self.stats)
        claims = Claims(db, ids, self.lifecycle, idempotency_ttl)
        self.claims = claims
        self.writes = Writes(
            db, ids, self.lifecycle, self.reconciler, self.cache, self.stats, self.hasher, claims,
            locks or DocLocks(), retry, sleep,
        )  # fmt: skip
        self._listing = CachedDocs(self.cache, self._remember_listed)

    async def follow_changes(self) -> None:
        """Keep the read cache fresh until cancelled (nothing to do without one)."""
        if self.cache.enabled:
            await self.feed.run()

    async def aclose(self) -> None:
        """Close the CouchDB client's connections."""
        await self.db.couch.aclose()

    # -- reading ----------------------------------------------------------------

    async def read(self, model: ModelType, docid: str) -> Stored:
        """The current stored document (verified, reconciled, an older version
        upgraded); DocumentNotFound unless it is a live ``model``."""
        return await self.writes.reader.read(model, docid)

    async def get(self, model: ModelType, docid: str, fresh: bool = False) -> Entry:
        """GET by id: from the cache unless ``fresh``; else read, and remembered unless
        the document changed meanwhile (``Cache.put``)."""
        if not fresh and (entry := self.cache.get(docid, model.name)) is not None:
            return entry
        ticket = self.cache.ticket(docid)
        current = await self.read(model, docid)
        answer = self.writes.answer(model, current)
        return self.writes.remember(model, current, answer, ticket)

    def _remember_listed(self, model: ModelType, stored: Stored, representation: Representation, ticket: Any) -> None:
        self.writes.remember(model, stored, self.writes.answer(model, stored, shown=representation), ticket)

    async def query(self, model: ModelType, query: Query, fresh: bool = False) -> Page:
        """A page of ``query``: its documents from the cache where it holds them, unless ``fresh``."""
        cached = self._listing if self.cache.enabled and not fresh else None
        return await run_query(self.db, self.writes.reader, model, query, self.cursor_ttl, cached=cached)

    async def changes(self, model: ModelType, since: str | None, limit: int, wait: float | None) -> Changes:
        """The verified change feed of ``model`` after ``since`` (``changes``)."""
        return await read_changes(self.db, self.writes.reader, model, since, limit, wait)

    async def verify_secrets(self, model: ModelType, docid: str, candidates: Any) -> dict[str, bool]:
        """Which candidate values match the stored bcrypt / sha3-512 ones (constant time)."""
        if not isinstance(candidates, dict) or not candidates:
            raise ValidationFailed([Violation("", "send an object of property: candidate value")])

        def problem(name: str, value: Any) -> str | None:
            prop = model.properties.get(name)
            if prop is None or prop.readable:
                return "not a bcrypt or sha3-512 property"
            if not isinstance(value, str):
                return "must be a string"
            if prop.kind.max_bytes is not None and len(value.encode()) > prop.kind.max_bytes:
                return f"is longer than {prop.kind.max_bytes} bytes"
            return None

        wrong = [Violation(pointer([n]), m) for n, v in candidates.items() if (m := problem(n, v))]
        if wrong:
            raise ValidationFailed(wrong)
        slow = any(model.properties[name].kind.slow for name in candidates)
        # a full queue answers busy before the read, not after it
        keys = self.lifecycle.keys
        with self.hasher.reserved() if slow else contextlib.nullcontext():
            doc = await self.read(model, docid)
            result = {}
            for name, candidate in candidates.items():
                kind, slot = model.properties[name].kind, model.slot(name, docid)
                if doc.get(name) is None:
                    result[name] = False
                elif kind.slow:
                    result[name] = await self.hasher.run(kind.holds, keys, slot, doc[name], candidate, reserved=True)
                else:
                    result[name] = kind.holds(keys, slot, doc[name], candidate)
        self.stats.verify_answered(model.name, all(result.values()))
        return result

    # -- writing ----------------------------------------------------------------

    async def write(self, model: ModelType, changes: list[Change]) -> list[Answer | Exception]:
        """Many writes of one type (a bulk request): one answer each, in order."""
        await self.writes.apply(model, changes)
        return [change.answer or RuntimeError("no answer") for change in changes]

    async def _one(self, model: ModelType, change: Change) -> Answer:
        [answer] = await self.write(model, [change])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def create(self, model: ModelType, body: Any, idempotency_key: str | None = None) -> Answer:
        """Store a new document. A replayed Idempotency-Key answers the first document
        with ``created`` False."""
        return await self._one(model, Change(Op.CREATE, None, body, key=idempotency_key))

    async def create_with_id(self, model: ModelType, docid: str, body: Any) -> Answer:
        """Create under a caller-chosen stable id (installer seeds). If the id exists
        already with this type, that document is answered (``created`` False); an id
        deleted before continues its tombstone's branch."""
        held = (await self.writes.reads.many([docid]))[docid]
        if held.doc is not None:
            return self.writes.answer(model, await self.writes.reader.open(model, held))
        current = {"_id": docid, "_rev": held.tombstone} if held.tombstone else None
        return await self._one(model, Change(Op.CREATE, docid, body, current=current))

    async def replace(self, model: ModelType, docid: str, body: Any, if_match: Revisions) -> Answer:
        return await self._one(model, Change(Op.REPLACE, docid, body, if_match))

    async def patch(self, model: ModelType, docid: str, patch: Any, if_match: Revisions | None) -> Answer:
        """RFC 7396 merge patch. With ``if_match`` it is a checked write; without, the
        sidecar re-reads and re-applies it on conflicts (bounded, jittered)."""
        if patch == {}:  # changes nothing: the current representation, no new revision
            self.lifecycle.check(Op.PATCH, model, patch)
            current = await self.read(model, docid)
            if if_match is not None:
                self.writes.check_revision(model, current, if_match)
            return self.writes.answer(model, current)
        return await self._one(model, Change(Op.PATCH, docid, patch, if_match))

    async def delete(self, model: ModelType, docid: str, if_match: Revisions) -> Answer:
        """A signed tombstone, or for ``delete: soft`` types the document marked deleted."""
        return await self._one(model, Change(Op.DELETE, docid, None, if_match))

    async def expire_idempotency_records(self) -> int:
        return await self.claims.expire()

    # -- what health and metrics show --------------------------------------------

    async def readiness(self, models: Models) -> JSONObject:
        return await readiness(self.db, models, self.stats)

    async def database_report(self, models: Models) -> JSONObject:
        """Raises DatabaseMissing when there is no database."""
        try:
            return await database_report(self.db, models)
        except NotFound:
            raise DatabaseMissing(self.db.name) from None
