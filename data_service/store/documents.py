"""Typed documents in CouchDB: read, create, replace, patch, delete, verify secrets.

The I/O shell around the lifecycle core (``lifecycle``): it reads the current stored
document (reconciling replication conflicts first, ``conflicts.reconciler``), checks
revisions, hashes bcrypt values in a thread pool (once per request, never inside a
retry), lets the core make the next signed document and writes it (``writes``). Ids
come from the ``_uuids`` pool and documents are created with PUT, so a retried create
never duplicates. Handlers get representations and revisions (``Shown``), never stored
documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

import orjson

from .. import envelope, etags, idempotency
from ..cache import Cache, Entry, Ticket
from ..conflicts.bookkeeping import new_writer_id
from ..conflicts.reconciler import Reconciler
from ..couchdb import Conflict, Database, IdPool, NotFound, Unreadable, WriteResult
from ..lifecycle import Lifecycle
from ..models import DeletePolicy, MigrationFailed, Models, ModelType, ValidationFailed, Violation, pointer
from ..protection import IntegrityViolation, Keyring, KeyUnavailable
from ..query import Query
from ..retry import RetryPolicy, attempts
from .bulk import Result, bulk
from .cachefeed import CacheFeed
from .changes import Changes, read_changes
from .claims import Claims
from .errors import DocumentNotFound, IdempotencyKeyConsumed, IdempotencyMismatch, RetriesExhausted, StaleRevision
from .hashing import Hasher
from .queries import CachedDocs, run_query
from .readiness import DatabaseMissing, readiness
from .report import database_report
from .results import Page, Shown, Stats
from .writes import Writes

log = logging.getLogger("data_service.store")

T = TypeVar("T")
ANY_REVISION = "*"
Revisions = frozenset  # the revisions an If-Match accepts; ANY_REVISION for "*"


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
    ) -> None:
        """``keys`` are loaded for this database's deployment (``Keyring``); ``writer``
        names this process in counters' metadata (random by default; never share one
        between processes); ``retry`` bounds the sidecar's own read-modify-write loops;
        ``idempotency_ttl``: seconds an Idempotency-Key is remembered; ``cursor_ttl``:
        seconds a query's ``next`` cursor stays valid; ``cache``: the read cache (off
        without one; it serves only while a ``CacheFeed`` keeps it live)."""
        self.db = db
        self.cache = cache if cache is not None else Cache(0)
        self.feed = CacheFeed(db, self.cache)
        self.worker = 0  # which of the serving processes this is (metrics label)
        if self.cache.enabled:
            db.written = self.cache.written
        self.ids = ids
        self.lifecycle = Lifecycle(keys, writer or new_writer_id())
        self.hasher = hasher or Hasher()  # bounded: a full queue answers 503 busy
        self.retry, self.sleep = retry, sleep
        self.cursor_ttl = cursor_ttl
        self.stats = Stats()
        self.writes = Writes(db, self.stats, self.lifecycle)
        self.claims = Claims(db, self.lifecycle, self.writes, idempotency_ttl)
        self.reconciler = Reconciler(db, self.lifecycle, self.stats)
        self._listing = CachedDocs(self.cache, self._remember_listed)

    async def follow_changes(self) -> None:
        """Keep the read cache fresh until cancelled (nothing to do without one)."""
        if self.cache.enabled:
            await self.feed.run()

    async def aclose(self) -> None:
        """Close the CouchDB client's connections."""
        await self.db.couch.aclose()

    # -- reading ----------------------------------------------------------------

    async def read(self, model: ModelType, docid: str) -> dict:
        """The stored doc, reconciled if it was conflicted, signature verified;
        DocumentNotFound unless it is a live ``model``. Verified *first*: a document
        whose type, version or deleted marker was changed in the database is an
        IntegrityViolation, never a quiet 404 (a valid document of another type is one).
        A document of an older version comes upgraded (``Lifecycle.current``): what its
        next write stores, with its revision."""
        try:
            doc = await self.db.get(docid, conflicts=True)
        except NotFound:
            raise DocumentNotFound(docid) from None
        except Unreadable:
            doc = envelope.unreadable(docid)
        if doc.get("_conflicts") and envelope.model_of([model], doc):
            resolved = await self.reconciler.resolve(model, doc)
            if resolved is None:
                raise DocumentNotFound(docid)
            doc = resolved
        self.verify(doc)
        try:
            current = self.lifecycle.current(model, doc)
        except MigrationFailed as exc:
            log.warning("migration failed: document %s: %s", exc.docid, exc.reason)
            raise
        if current is None or envelope.is_deleted(current):
            raise DocumentNotFound(docid)
        return current

    async def get(self, model: ModelType, docid: str) -> Shown:
        return self.shown(model, await self.read(model, docid))

    def cached(self, model: ModelType, docid: str) -> Entry | None:
        """The document's response from memory, if the cache holds its current version."""
        return self.cache.get(docid, model.name) if self.cache.enabled else None

    async def get_entry(self, model: ModelType, docid: str, fresh: bool = False) -> Entry:
        """GET by id: from the cache unless ``fresh``; else read (verified), remembered
        unless it changed meanwhile (``Cache.put``)."""
        if not fresh and (entry := self.cached(model, docid)) is not None:
            return entry
        ticket = self.cache.ticket(docid)
        current = await self.read(model, docid)
        return self.remember(model, current, self.shown(model, current), ticket)

    def remember(self, model: ModelType, stored: dict, shown: Shown, ticket: Ticket, own_writes: int = 0) -> Entry:
        """The response entry for ``shown``, kept by the cache (with ``stored``, the
        document it was made from) unless ``docid`` changed since ``ticket``."""
        entry = Entry(model.name, shown.rev, etags.etag(shown.rev), orjson.dumps(shown.body))
        if self.cache.enabled:
            self.cache.put(shown.id, ticket, replace(entry, stored=orjson.dumps(stored)), own_writes)
        return entry

    def _remember_listed(self, model: ModelType, stored: dict, representation: dict, ticket: Ticket) -> None:
        self.remember(model, stored, Shown(stored["_id"], stored["_rev"], representation), ticket)

    def shown(self, model: ModelType, doc: dict, **flags: bool) -> Shown:
        return Shown(doc["_id"], doc["_rev"], self.lifecycle.representation(model, doc), **flags)

    def verify(self, doc: dict) -> None:
        """Check a stored document's signature; failures are logged (by id) and counted
        (a key this sidecar lacks is logged, but it is no tampering)."""
        try:
            self.lifecycle.verify(doc)
        except IntegrityViolation as exc:
            self.stats.integrity_violations += 1
            log.warning("integrity violation: document %s: %s", exc.docid, exc.reason)
            raise
        except KeyUnavailable as exc:
            log.warning("document %s: %s", doc.get("_id"), exc)
            raise

    async def query(self, model: ModelType, query: Query, fresh: bool = False) -> Page:
        """A page of ``query``: its documents from the cache where it holds them, unless ``fresh``."""
        cached = self._listing if self.cache.enabled and not fresh else None
        return await run_query(
            self.db, self.lifecycle, self.reconciler, self.verify, model, query, self.cursor_ttl, cached=cached
        )

    async def bulk(self, model: ModelType, items: list) -> list[Result]:
        """Many writes of one type in one request (``bulk``)."""
        return await bulk(self, model, items)

    async def changes(self, model: ModelType, since: str | None, limit: int, wait: float | None) -> Changes:
        """The verified change feed of ``model`` after ``since`` (``changes``)."""
        return await read_changes(self.db, self.lifecycle, self.verify, model, since, limit, wait)

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
        self.stats.verified(model.name, all(result.values()))
        return result

    # -- writing ----------------------------------------------------------------

    async def create(self, model: ModelType, body: Any, idempotency_key: str | None = None) -> Shown:
        """Store a new document. A replayed Idempotency-Key returns the first
        document with ``created=False``."""
        self.lifecycle.check_body(model, body)
        if idempotency_key is None:
            return await self._insert(model, await self.ids.take(), body, twin_ok=False)
        return await self._create_once(model, body, idempotency_key)

    async def create_with_id(self, model: ModelType, docid: str, body: Any) -> Shown:
        """Create under a caller-chosen stable id (installer seeds). If the id exists
        already with this type, that document is returned (``created=False``). An id
        deleted before continues its tombstone's branch: signed for that generation."""
        self.lifecycle.check_body(model, body)
        state = await self.db.revision(docid)
        tombstone = state[0] if state is not None and state[1] else None
        return await self._insert(model, docid, body, twin_ok=True, tombstone=tombstone)

    async def _create_once(self, model: ModelType, body: Any, key: str) -> Shown:
        """Claim the key with a record (see ``idempotency``), then store the document.
        A replay finds the record and answers with the document it names."""
        async for _ in attempts(self.retry, self.sleep):
            async with self.writes.serialized(idempotency.record_id(model.name, key)):
                record = await self.claims.record(model, key)
                if record is None or self.claims.expired(record):
                    docid = await self.ids.take()
                    if not await self.claims.claim(model, key, docid, body, record):
                        continue  # claimed first by another sidecar: read its record
                    record = None
            if record is None:
                return await self._insert(model, docid, body, twin_ok=True)
            if record["body"] != idempotency.body_digest(body):
                raise IdempotencyMismatch(key)
            return await self._replay(model, record["doc_id"], body, key)
        raise RetriesExhausted(key)

    async def _replay(self, model: ModelType, docid: str, body: Any, key: str) -> Shown:
        """The document a claimed key names; stored now if the claimer has not (yet)."""
        with contextlib.suppress(DocumentNotFound):
            return await self.get(model, docid)
        state = await self.db.revision(docid)
        if state is None:  # claimed but not stored: in flight, or that request died before storing it
            return await self._insert(model, docid, body, twin_ok=True)
        _, deleted = state
        if not deleted:  # stored by the claimer just now, or soft-deleted since
            with contextlib.suppress(DocumentNotFound):
                return await self.get(model, docid)
        raise IdempotencyKeyConsumed(key)

    async def _insert(
        self, model: ModelType, docid: str, body: dict, twin_ok: bool, tombstone: str | None = None
    ) -> Shown:
        """PUT a new document (over the ``tombstone`` of a deleted one). On a 409 the id
        is taken; with ``twin_ok`` by the work of a request with the same idempotency key
        and body (or seed), which is returned."""
        hashed = await self.hash_values(model, docid, body)
        doc = self.lifecycle.create(model, docid, body, hashed, envelope.now(), tombstone)
        ticket = self.cache.ticket(docid)
        try:
            result = await self.writes.put(doc, None)
        except Conflict:
            if not twin_ok:
                raise
            return await self.get(model, docid)
        return self._written(model, doc, result, ticket, created=True)

    async def replace(self, model: ModelType, docid: str, body: Any, if_match: Revisions) -> Shown:
        self.lifecycle.check_replacement(model, body)
        hashed = await self.hash_values(model, docid, body)

        def replaced(current: dict) -> Awaitable[Shown]:
            return self._write(model, current, self.lifecycle.replace(model, current, body, hashed, envelope.now()))

        return await self._checked(model, docid, if_match, replaced)

    async def patch(self, model: ModelType, docid: str, patch: Any, if_match: Revisions | None) -> Shown:
        """RFC 7396 merge patch. With ``if_match`` it is a checked write; without, the
        sidecar re-reads and retries on conflicts (bounded, jittered)."""
        self.lifecycle.check_patch(model, patch)
        if not patch:  # {} changes nothing: the current representation, no new revision
            current = await self.read(model, docid)
            if if_match is not None:
                self.check_revision(model, current, if_match)
            return self.shown(model, current)
        hashed = await self.hash_values(model, docid, patch)

        def patched(current: dict) -> dict:
            return self.lifecycle.patch(model, current, patch, hashed, envelope.now())

        if if_match is not None:
            return await self._checked(
                model, docid, if_match, lambda current: self._write(model, current, patched(current))
            )
        async for _ in attempts(self.retry, self.sleep):
            try:
                async with self.writes.serialized(docid):
                    current = await self.read(model, docid)
                    return await self._write(model, current, patched(current))
            except Conflict:
                self.stats.write_conflicts += 1
                self.stats.patch_retries += 1
        raise RetriesExhausted(docid)

    async def delete(self, model: ModelType, docid: str, if_match: Revisions) -> bool:
        """Hard delete, or for ``delete: soft`` types keep the doc marked deleted.
        True when CouchDB stored it below the write quorum (202)."""

        async def on(current: dict) -> bool:
            if model.delete_policy is DeletePolicy.SOFT:
                doc = self.lifecycle.soft_delete(model, current, envelope.now())
                return (await self.writes.put(doc, current)).accepted
            return (await self.writes.delete(docid, current["_rev"])).accepted

        return await self._checked(model, docid, if_match, on)

    async def _checked(
        self, model: ModelType, docid: str, if_match: Revisions, write: Callable[[dict], Awaitable[T]]
    ) -> T:
        """A write by a caller who named the revision(s) it read, made by ``write`` on
        the current stored document: a 409 is StaleRevision. When the cache holds the
        named revision's stored document the write goes straight to CouchDB on it; if
        CouchDB has a newer one (a write made elsewhere the feed has not brought yet)
        the write starts over from CouchDB's."""
        async with self.writes.serialized(docid):
            if (parent := self._cached_parent(model, docid, if_match)) is not None:
                with contextlib.suppress(Conflict):
                    return await write(parent)
            current = await self.read(model, docid)
            self.check_revision(model, current, if_match)
            try:
                return await write(current)
            except Conflict:
                raise await self._stale(model, docid) from None

    def _cached_parent(self, model: ModelType, docid: str, if_match: Revisions) -> dict | None:
        """The stored document the cache holds for ``docid`` if the caller named its revision."""
        entry = self.cache.peek(docid, model.name) if self.cache.enabled else None
        if entry is None or not entry.stored or entry.rev not in if_match:
            return None
        self.cache.stats.parents += 1
        return orjson.loads(entry.stored)

    async def _write(self, model: ModelType, current: dict, doc: dict) -> Shown:
        ticket = self.cache.ticket(doc["_id"])
        result = await self.writes.put(doc, current)
        return self._written(model, doc, result, ticket)

    def _written(self, model: ModelType, doc: dict, result: WriteResult, ticket: Ticket, **flags: bool) -> Shown:
        """What the caller is answered, also remembered by the cache (read-your-writes
        from memory) unless another write to the id came between (the one bump is ours)."""
        stored = {**doc, "_rev": result.rev}
        shown = self.shown(model, stored, below_quorum=result.accepted, **flags)
        if self.cache.enabled:
            self.remember(model, stored, shown, ticket, own_writes=1)
        return shown

    async def hash_values(self, model: ModelType, docid: str, values: dict) -> Mapping[str, str]:
        """The bcrypt values of ``values``, hashed in the thread pool (Busy when it is full).
        Called once per request, never inside a retry loop."""
        keys = self.lifecycle.keys
        return {
            name: await self.hasher.run(model.properties[name].kind.protect, keys, model.slot(name, docid), value)
            for name, value in self.lifecycle.slow_values(model, values).items()
        }

    def check_revision(self, model: ModelType, current: dict, if_match: Revisions) -> None:
        if ANY_REVISION not in if_match and current["_rev"] not in if_match:
            self.stats.stale_revisions += 1
            raise StaleRevision(current["_rev"], self.lifecycle.representation(model, current))

    async def _stale(self, model: ModelType, docid: str) -> StaleRevision:
        """After CouchDB's 409 on a write the caller named a revision for."""
        self.stats.write_conflicts += 1
        self.stats.stale_revisions += 1
        current = await self.read(model, docid)
        return StaleRevision(current["_rev"], self.lifecycle.representation(model, current))

    async def expire_idempotency_records(self) -> int:
        return await self.claims.expire()

    # -- what health and metrics show --------------------------------------------

    async def readiness(self, models: Models) -> dict:
        return await readiness(self.db, models, self.stats)

    async def database_report(self, models: Models) -> dict:
        """Raises DatabaseMissing when there is no database."""
        try:
            return await database_report(self.db, models)
        except NotFound:
            raise DatabaseMissing(self.db.name) from None
