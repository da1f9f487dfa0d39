"""The one write pipeline, for one document and for many (a bulk request is a batch).

Every write takes the same steps, in this order, each in one place:

1. check the values (``Lifecycle.check``), the precondition rule (replace and delete
   name a revision: 428) and the batch (one write per document, one per key);
2. hash bcrypt values in the thread pool, once per request, outside any retry
   (``Hasher``; a stale write therefore pays its hash before its 412: bcrypt runs
   outside the document's lock, so a slow hash never holds other writers up);
3. claim Idempotency-Keys (``claims``): a replayed key answers with its document;
4. new ids from the ``_uuids`` pool;
5. hold the documents (``locks``: one writer per document in the sidecar), then, a
   bounded number of rounds:
   a. the current document: the cached one when the caller named its revision (no
      read), else read (``reads``), reconciled if it has to be (``reconciler``) and
      opened by the lifecycle (verified first);
   b. the revision check: 412 with the current representation;
   c. the next document (``Lifecycle.next``);
   d. one ``_bulk_docs`` asking every copy (``Database.save``); a document stored on
      fewer copies is decided by ``races``; a conflict (409) sends the write round again
      from CouchDB's current document — where the revision check answers 412, or an
      unconditioned PATCH is re-applied;
6. the answer (``Answer``: representation serialized once, from the clear values the
   lifecycle had) and the read cache told (forgotten before the write, remembered after).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from .. import envelope, etags
from ..cache import Cache, Entry, Ticket
from ..couchdb import CouchDBError, Database, IdPool, Saved
from ..errors import ServiceError
from ..lifecycle import Lifecycle, Made, Op
from ..models import ModelType, ValidationFailed, Violation
from ..retry import RetryPolicy, attempts
from ..vocabulary import Representation, Stored
from .change import ANY_REVISION, Change
from .claims import Claims
from .errors import (
    DocumentNotFound,
    IdempotencyKeyConsumed,
    KeyInProgress,
    PreconditionRequired,
    RetriesExhausted,
    StaleRevision,
)
from .hashing import Hasher
from .locks import DocLocks
from .races import Races
from .reader import Reader
from .reads import Held, Reads
from .reconciler import Reconciler
from .results import Answer, Stats


class Writes:
    def __init__(
        self,
        db: Database,
        ids: IdPool,
        lifecycle: Lifecycle,
        reconciler: Reconciler,
        cache: Cache,
        stats: Stats,
        hasher: Hasher,
        claims: Claims,
        locks: DocLocks,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.db, self.ids, self.lifecycle, self.reconciler = db, ids, lifecycle, reconciler
        self.cache, self.stats, self.hasher, self.claims, self.locks = cache, stats, hasher, claims, locks
        self.retry, self.sleep = retry, sleep
        self.reads = Reads(db)
        self.reader = Reader(self.reads, reconciler, lifecycle, stats)
        self.races = Races(db, lifecycle, stats)

    async def apply(self, model: ModelType, changes: list[Change]) -> None:
        """Make every change, each answered in ``change.answer`` (an ``Answer`` or the
        exception a single request would raise)."""
        keys: set[str] = set()
        ids: set[str] = set()
        for change in changes:
            if change.answer is not None:  # refused before it got here (a malformed bulk item)
                continue
            try:
                self._check(model, change, keys, ids)
                change.hashed = await self.hash_values(model, change.docid or "", change.values)
            except ServiceError as exc:
                change.answer = exc
        await self.claims.claim(model, [c for c in changes if c.answer is None and c.key])
        await self._replays(model, [c for c in changes if c.answer is None and c.replay])
        for change in changes:
            if change.answer is None and change.docid is None:
                change.docid = await self.ids.take()
        pending = [c for c in changes if c.answer is None]
        async with self.locks.held(c.docid or "" for c in pending):
            await self._rounds(model, pending)

    async def _replays(self, model: ModelType, changes: list[Change]) -> None:
        """Creates whose key names a document already: answered with it (``created``
        False), ``idempotency_key_consumed`` when it was deleted since; one not stored yet
        is created now if its claim is settled (``Claims._replay``), else ``KeyInProgress``."""
        held = await self.reads.many(c.docid or "" for c in changes) if changes else {}
        for change in changes:
            found = held[change.docid or ""]
            if found.doc is not None:
                try:
                    change.answer = self.answer(model, await self.reader.open(model, found))
                except DocumentNotFound:  # soft-deleted since
                    change.answer = IdempotencyKeyConsumed(change.key)
                except ServiceError as exc:
                    change.answer = exc
            elif found.tombstone is not None:
                change.answer = IdempotencyKeyConsumed(change.key)
            elif not change.may_complete:  # its claimer is at work, or lost to a rival: retry
                change.answer = KeyInProgress(change.key)

    def _check(self, model: ModelType, change: Change, keys: set[str], ids: set[str]) -> None:
        """The batch (one write per document, one create per key), the values, then the
        precondition rule (a replace or delete names a revision: 428)."""
        if change.docid is not None:
            if change.docid in ids:
                raise ValidationFailed([Violation("/id", "written twice in one request")])
            ids.add(change.docid)
        if change.key is not None:
            if change.key in keys:
                raise ValidationFailed([Violation("/idempotency_key", "used twice in one request")])
            keys.add(change.key)
        self.lifecycle.check(change.op, model, change.values)
        if change.op in (Op.REPLACE, Op.DELETE) and change.if_match is None:
            raise PreconditionRequired()

    async def hash_values(self, model: ModelType, docid: str, values: Any) -> Mapping[str, str]:
        """The bcrypt values of ``values``, hashed in the thread pool (Busy when it is full)."""
        keys = self.lifecycle.keys
        return {
            name: await self.hasher.run(model.properties[name].kind.protect, keys, model.slot(name, docid), value)
            for name, value in self.lifecycle.slow_values(model, values).items()
        }

    async def _rounds(self, model: ModelType, pending: list[Change]) -> None:
        async for _ in attempts(self.retry, self.sleep):
            await self._currents(model, [c for c in pending if c.op is not Op.CREATE and c.current is None])
            made = self._made(model, pending)
            if not made:
                return
            pending = await self._save(model, made)
            if not pending:
                return
        for change in pending:
            change.answer = RetriesExhausted(change.docid)

    async def _currents(self, model: ModelType, changes: list[Change]) -> None:
        """Each change's current document: the cached one if the caller named its
        revision, else CouchDB's (one read for them all), verified and opened."""
        wanted = []
        for change in changes:
            entry = self.cache.peek(change.docid or "", model.name)
            if entry is not None and entry.stored and change.if_match and entry.rev in change.if_match:
                self.cache.stats.parents += 1
                change.current, change.cached = orjson.loads(entry.stored), True
            else:
                wanted.append(change)
        held: dict[str, Held] = {}
        if len(wanted) == 1:
            held[wanted[0].docid or ""] = await self.reads.one(wanted[0].docid or "")
        elif wanted:
            held = await self.reads.many(c.docid or "" for c in wanted)
        for change in wanted:
            try:
                change.current, change.cached = await self.reader.open(model, held[change.docid or ""]), False
            except (ServiceError, CouchDBError) as exc:
                change.answer = exc

    def _made(self, model: ModelType, changes: list[Change]) -> list[tuple[Change, Made]]:
        made = []
        for change in changes:
            if change.answer is not None:
                continue
            try:
                self._check_revision(model, change)
                made.append(
                    (
                        change,
                        self.lifecycle.next(
                            change.op, model, change.docid or "", change.current, change.values, change.hashed
                        ),
                    )
                )
            except ServiceError as exc:
                change.answer = exc
        return made

    def _check_revision(self, model: ModelType, change: Change) -> None:
        if change.if_match is not None and change.current is not None:
            self.check_revision(model, change.current, change.if_match)

    def check_revision(self, model: ModelType, current: Stored, if_match: frozenset[str]) -> None:
        """StaleRevision (412, with the current representation) unless ``if_match``
        accepts ``current``'s revision."""
        if ANY_REVISION not in if_match and current["_rev"] not in if_match:
            self.stats.stale_revisions += 1
            raise StaleRevision(current["_rev"], self.lifecycle.representation(model, current))

    async def _save(self, model: ModelType, made: list[tuple[Change, Made]]) -> list[Change]:
        """Write the documents; answer what stood; return the changes to make again."""
        tickets = [self.cache.ticket(change.docid or "") for change, _ in made]
        try:
            results = await self.db.save([m.doc for _, m in made])
        except BaseException:
            for change, _ in made:
                self.cache.written(change.docid or "")  # it may have landed
            raise
        again = []
        for (change, m), ticket, saved in zip(made, tickets, results, strict=True):
            self.cache.written(change.docid or "", saved.rev)
            stood = await self._stood(model, m, saved)
            if stood is not None:
                change.answer = self._answer(model, change, m, stood, ticket)
            elif saved.error not in (None, "conflict"):
                change.answer = CouchDBError("POST", "_bulk_docs", None, saved.error, saved.reason)
            elif change.op is Op.CREATE:  # the id exists: the work of a request with the same key, or a seed
                change.answer = await self._existing(model, change.docid or "")
            else:
                self.stats.write_conflicts += 1
                self.stats.patch_retries += change.blind
                change.current, change.cached = None, False
                again.append(change)
        return again

    async def _stood(self, model: ModelType, m: Made, saved: Saved) -> tuple[str, bool] | None:
        """(revision, provisional) of a write that stands; None: it did not."""
        if saved.rev is not None and not saved.accepted:
            return saved.rev, False
        if saved.rev is None and not (saved.error == "conflict" and saved.retried):
            return None
        stands, rev = await self.races.stands(model, m.doc, saved.rev)
        return (rev, True) if stands and rev is not None else None

    async def _existing(self, model: ModelType, docid: str) -> Answer:
        """The document already stored under ``docid`` (``created`` False)."""
        return self.answer(model, await self.reader.open(model, await self.reads.one(docid)))

    def answer(self, model: ModelType, current: Stored, shown: Representation | None = None) -> Answer:
        """The answer for a stored document read from CouchDB (decrypted here unless its
        representation is ``shown`` already)."""
        body = orjson.dumps(shown if shown is not None else self.lifecycle.representation(model, current))
        return Answer(current["_id"], current["_rev"], etags.etag(current["_rev"]), body)

    def remember(self, model: ModelType, stored: Stored, answer: Answer, ticket: Ticket, own_writes: int = 0) -> Entry:
        """The read cache's entry for ``answer``, kept (with ``stored``, the document it
        was made from) unless the document changed since ``ticket``."""
        entry = Entry(model.name, answer.rev, answer.etag, answer.body, orjson.dumps(stored))
        self.cache.put(answer.id, ticket, entry, own_writes)
        return entry

    def _answer(self, model: ModelType, change: Change, m: Made, stood: tuple[str, bool], ticket: Ticket) -> Answer:
        rev, provisional = stood[0], stood[1] or change.key_provisional
        if m.doc.get("_deleted") or envelope.is_deleted(m.doc):
            return Answer(m.doc["_id"], rev, etags.etag(rev), below_quorum=provisional, deleted=True)
        body = orjson.dumps(m.shown)
        answer = Answer(m.doc["_id"], rev, etags.etag(rev), body, change.op is Op.CREATE, provisional)
        if not provisional:  # a leaf below quorum may lose the policy to a racing one: a read decides
            self.remember(model, {**m.doc, "_rev": rev}, answer, ticket, own_writes=1)
        return answer
