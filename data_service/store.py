"""Typed documents in CouchDB: create, read, replace, patch, delete, verify.

The rules live here, apart from HTTP: ids from the ``_uuids`` pool and created
with PUT (a retried create never duplicates), revision checks, the sidecar's
own read-modify-write loop for PATCH, soft deletes, idempotency keys, and
protection: values are protected and the document signed before every write;
every read verifies the signature first. bcrypt runs in a thread pool.
Every read also asks CouchDB for replication conflicts and reconciles a conflicted
document before answering (``reconcile.py``); writes of ``conflict: merge`` types
record what the merge needs (``reconcile.stamp``), and ``immutable`` properties
cannot be changed once set.
Errors are the exceptions below; ``problems.py`` says how each is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from . import documents, idempotency, reconcile
from .couchdb import Conflict, CouchDBError, Database, IdPool, NotFound, WriteResult
from .design import IDEMPOTENCY_NAME, VIEW
from .models import BCRYPT_MAX_BYTES, DEFAULT_BCRYPT_COST, ModelType, ValidationFailed, Violation, is_reserved
from .protection import IntegrityViolation, KeyUnavailable, Protector, check_password, hash_password
from .query import Query, QueryError, plan
from .retry import RetryPolicy

log = logging.getLogger("data_service.store")

ANY_REVISION = "*"
Revisions = frozenset  # the revisions an If-Match accepts; ANY_REVISION for "*"


class DocumentNotFound(KeyError):
    """No such document of this type (missing, another type, or soft-deleted)."""


class StaleRevision(Exception):
    """The caller's revision is not the current one. ``current`` is the stored doc,
    ``representation`` what the caller may see of it."""

    def __init__(self, current: dict, representation: dict) -> None:
        super().__init__(current["_id"])
        self.current = current
        self.representation = representation


class ReservedNames(ValidationFailed):
    """The body sets names that belong to the service (id, type, meta, ...)."""


class RetriesExhausted(Exception):
    """The document kept changing under the sidecar's own read-modify-write."""


class IdempotencyMismatch(Exception):
    """An Idempotency-Key was reused with a different body."""


class IdempotencyKeyConsumed(Exception):
    """An Idempotency-Key whose document was created and then deleted: a replay must
    not bring it back."""


@dataclass
class Stats:
    """Counters the metrics endpoint exposes (read at scrape time)."""

    integrity_violations: int = 0
    stale_revisions: int = 0  # 412s answered
    patch_retries: int = 0  # CouchDB conflicts the sidecar's own PATCH loop retried
    write_conflicts: int = 0  # every 409 CouchDB answered to a document write
    conflicts_found: int = 0  # conflicted documents the reconciler looked at (each time)
    conflicts_resolved: int = 0  # ... merged and their losing revisions deleted
    conflicts_unresolvable: int = 0  # ... left as they are (immutable values differ, ...)
    conflict_leaves_discarded: int = 0  # losing revisions that failed their signature check
    writes_below_quorum: int = 0  # writes CouchDB answered 202 (stored, not on a write quorum)
    quorum_races_lost: int = 0  # ... of which a concurrent write had won: undone, answered as stale
    last_below_quorum: float = 0.0  # time.monotonic() of the latest 202


@dataclass(frozen=True)
class Written:
    """A stored document and how it got there."""

    doc: dict
    created: bool = False  # False: an Idempotency-Key replay (or seed) found it stored already
    below_quorum: bool = False  # CouchDB answered 202: stored, but not yet on a write quorum


@dataclass
class Page:
    """One page of a collection query: representations, the next cursor, and the
    documents left out because they failed verification (logged and counted too)."""

    items: list[dict]
    next: str | None
    omitted: list[dict]


class DocumentStore:
    def __init__(
        self,
        db: Database,
        ids: IdPool,
        protector: Protector,
        hasher: Executor | None = None,
        patch_retry: RetryPolicy = RetryPolicy(attempts=30, base=0.01, cap=0.25),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        writer: str | None = None,
        idempotency_ttl: float = 86400.0,
    ) -> None:
        """``writer`` names this process in counters' metadata (random by default;
        never share one between processes); ``idempotency_ttl``: seconds an
        Idempotency-Key is remembered."""
        self.db = db
        self.ids = ids
        self.protector = protector
        self.hasher = hasher or ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")
        self.patch_retry = patch_retry
        self._sleep = sleep
        self.stats = Stats()
        self.writer = writer or reconcile.new_writer_id()
        self.reconciler = reconcile.Reconciler(db, protector, self.stats)
        self.idempotency_ttl = idempotency_ttl
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def _serialized(self, docid: str) -> AsyncIterator[None]:
        """Writes to one document from this process, one at a time: they would conflict
        in CouchDB anyway, and on a cluster two concurrent writes from one revision can
        both be stored (one 201, one 202 on another copy) — never racing them avoids it."""
        lock, users = self._locks.setdefault(docid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[docid]

    # -- reading ----------------------------------------------------------------

    async def read(self, model: ModelType, docid: str) -> dict:
        """The stored doc, reconciled if it was conflicted, signature verified;
        DocumentNotFound unless it is a live ``model``."""
        try:
            doc = await self.db.get(docid, conflicts=True)
        except NotFound:
            raise DocumentNotFound(docid) from None
        if not documents.is_of(model, doc):
            raise DocumentNotFound(docid)
        if doc.get("_conflicts"):
            doc = await self.reconciler.resolve(model, doc)
            if doc is None or not documents.is_of(model, doc):
                raise DocumentNotFound(docid)
        if documents.is_deleted(doc):
            raise DocumentNotFound(docid)
        self.verify(doc)
        return doc

    def verify(self, doc: dict) -> None:
        try:
            self.protector.verify(doc)
        except IntegrityViolation as exc:
            self.stats.integrity_violations += 1
            log.warning("integrity violation: document %s: %s", exc.docid, exc.reason)
            raise

    def representation(self, model: ModelType, doc: dict) -> dict:
        return documents.representation(model, doc, self._revealed(model, doc))

    def _revealed(self, model: ModelType, doc: dict) -> dict:
        """The readable properties in clear."""
        return {name: self.protector.reveal(model, doc["_id"], name, value)
                for name, value in documents.properties(doc).items()
                if name in model.properties and model.properties[name].readable}

    async def query(self, model: ModelType, query: Query) -> Page:
        """A page of documents from the index view serving ``query`` (keyset paging:
        the cursor holds the segment, key and id of the last item returned)."""
        chosen = plan(model, query, self.protector.lookup_values)
        bound_to = documents.digest(query.signature())
        segment, after = 0, None
        if query.cursor is not None:
            try:
                cursor = self.protector.unseal(query.cursor)
                segment, after = int(cursor["s"]), (cursor["k"], cursor["d"])
                valid = cursor["q"] == bound_to
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                raise QueryError("cursor: not a cursor of this query (forged, edited or for other filters)")
        found: list[tuple[dict, int, tuple]] = []  # (representation, segment, (key, id))
        omitted: list[dict] = []
        while segment < len(chosen.segments) and len(found) <= query.limit:
            want = query.limit + 1 - len(found) + (after is not None)
            rows, exhausted = await self._rows(chosen, segment, after, want)
            for row in rows:
                after = (row["key"], row["id"])
                doc = row.get("doc")
                if doc is None or not chosen.accepts(row["key"]):
                    continue
                if doc.get("_conflicts"):  # reconciled here; skipped if that moved it in the index
                    doc = await self.reconciler.resolve(model, doc)
                    if doc is None or chosen.index.key(doc) != row["key"]:
                        continue
                if documents.is_deleted(doc) and not query.include_deleted:
                    continue
                try:
                    self.verify(doc)
                    found.append((self.representation(model, doc), segment, after))
                except (IntegrityViolation, KeyUnavailable) as exc:
                    omitted.append({"id": doc["_id"], "code": "integrity_violation"
                                    if isinstance(exc, IntegrityViolation) else "key_unavailable"})
                if len(found) > query.limit:
                    break
            if exhausted and len(found) <= query.limit:
                segment, after = segment + 1, None
        next_cursor = None
        if len(found) > query.limit:
            found = found[:query.limit]
            _, last_segment, (key, docid) = found[-1]
            next_cursor = self.protector.seal({"q": bound_to, "s": last_segment, "k": key, "d": docid})
        return Page([item for item, _, _ in found], next_cursor, omitted)

    async def _rows(self, chosen, segment: int, after: tuple | None, want: int) -> tuple[list[dict], bool]:
        """Rows of one segment after ``after`` (exclusive); True when the segment ended."""
        seg = chosen.segments[segment]
        start, end = (seg.high, seg.low) if chosen.descending else (seg.low, seg.high)
        options: dict[str, Any] = {"startkey": start, "endkey": end, "include_docs": True, "conflicts": True,
                                   "limit": want}
        if chosen.descending:
            options["descending"] = True
        if after is not None:
            options["startkey"], options["startkey_docid"] = after
        rows = (await self.db.view(chosen.index.design, VIEW, **options)).rows
        exhausted = len(rows) < want
        if after is not None and rows and (rows[0]["key"], rows[0]["id"]) == tuple(after):
            rows = rows[1:]
        return rows, exhausted

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
            if prop.protection == "bcrypt" and len(value.encode()) > BCRYPT_MAX_BYTES:
                return f"is longer than {BCRYPT_MAX_BYTES} bytes"
            return None

        wrong = [Violation(f"/{n}", m) for n, v in candidates.items() if (m := problem(n, v))]
        if wrong:
            raise ValidationFailed(wrong)
        doc = await self.read(model, docid)
        loop = asyncio.get_running_loop()
        result = {}
        for name, candidate in candidates.items():
            stored = doc.get(name)
            if stored is None:
                result[name] = False
            elif model.properties[name].protection == "bcrypt":
                result[name] = await loop.run_in_executor(self.hasher, check_password, candidate, stored)
            else:
                result[name] = self.protector.matches_hash(model, name, candidate, stored)
        return result

    # -- writing ----------------------------------------------------------------

    async def create(self, model: ModelType, body: Any, idempotency_key: str | None = None) -> Written:
        """Store a new document. A replayed Idempotency-Key returns the first
        document with ``created=False``."""
        _validate(model, body)
        if idempotency_key is None:
            return await self._insert(model, await self.ids.take(), body, twin_ok=False)
        return await self._create_once(model, body, idempotency_key)

    async def _create_once(self, model: ModelType, body: Any, key: str) -> Written:
        """Claim the key with a record (see ``idempotency``), then store the document.
        A replay finds the record and answers with the document it names."""
        record_id = idempotency.record_id(model.name, key)
        for _ in range(self.patch_retry.attempts):
            async with self._serialized(record_id):
                at = dt.datetime.now(dt.timezone.utc)
                record = await self._idempotency_record(model, key)
                if record is None or idempotency.expired(record, at):
                    docid = await self.ids.take()
                    claim = idempotency.new_record(model.name, key, docid, body, at, self.idempotency_ttl)
                    if record is not None:
                        claim["_rev"] = record["_rev"]
                    try:
                        await self._put(self.protector.sign(claim), record)
                    except Conflict:
                        continue  # claimed first by another sidecar: read its record
                    claimed = True
                else:
                    claimed = False
            if claimed:
                return await self._insert(model, docid, body, twin_ok=True)
            if record["body"] != idempotency.body_digest(body):
                raise IdempotencyMismatch(key)
            return await self._replay(model, record["doc_id"], body, key)
        raise RetriesExhausted(record_id)

    async def _replay(self, model: ModelType, docid: str, body: Any, key: str) -> Written:
        """The document a claimed key names; stored now if the claimer has not (yet)."""
        with contextlib.suppress(DocumentNotFound):
            return Written(await self.read(model, docid))
        state = await self.db.revision(docid)
        if state is None:  # claimed but not stored: in flight, or that request died before storing it
            return await self._insert(model, docid, body, twin_ok=True)
        _, deleted = state
        if not deleted:  # stored by the claimer just now, or soft-deleted since
            with contextlib.suppress(DocumentNotFound):
                return Written(await self.read(model, docid))
        raise IdempotencyKeyConsumed(key)

    async def _idempotency_record(self, model: ModelType, key: str) -> dict | None:
        """The verified record of ``key``, or None."""
        try:
            record = await self.db.get(idempotency.record_id(model.name, key))
        except NotFound:
            return None
        self.verify(record)
        if record.get("key") != idempotency.key_digest(model.name, key):
            self.stats.integrity_violations += 1
            raise IntegrityViolation(record["_id"], "idempotency record of another key")
        return record

    async def expire_idempotency_records(self, page: int = 500) -> int:
        """Delete expired Idempotency-Key records (the background sweep); how many."""
        deleted = 0
        while True:
            rows = (await self.db.view(IDEMPOTENCY_NAME, VIEW, endkey=documents.now(), limit=page)).rows
            if not rows:
                return deleted
            results = await self.db.bulk_docs([{"_id": row["id"], "_rev": row["value"], "_deleted": True}
                                               for row in rows])
            deleted += sum(1 for result in results if result.get("ok"))
            if len(rows) < page:
                return deleted

    async def create_with_id(self, model: ModelType, docid: str, body: Any) -> Written:
        """Create under a caller-chosen stable id (installer seeds). If the id exists
        already with this type, that document is returned (``created=False``)."""
        _validate(model, body)
        return await self._insert(model, docid, body, twin_ok=True)

    async def _insert(self, model: ModelType, docid: str, props: dict, twin_ok: bool) -> Written:
        """PUT a new document. On a 409 the doc is already there: our own retried PUT
        (same signature), or with ``twin_ok`` the work of a request with the same
        idempotency key and body."""
        stored = await self._protect(model, docid, props)
        doc = reconcile.stamp(model, self.protector, None, documents.new(model, docid, stored, documents.now()),
                              self.writer)
        doc = self.protector.sign(doc)
        try:
            result = await self._put(doc, None)
        except Conflict:
            existing = await self.read(model, docid)
            if twin_ok or existing.get("sig") == doc["sig"]:
                return Written(existing)
            raise
        return Written({**doc, "_rev": result.rev}, created=True, below_quorum=result.accepted)

    async def _put(self, doc: dict, parent: dict | None) -> WriteResult:
        """PUT ``doc`` over ``parent`` (None: a new document), checking a 202 (``_check_race``)."""
        result = await self.db.put(doc)
        if result.accepted and await self._lost_race(doc["_id"], result.rev):
            await self._undo(doc["_id"], result.rev, parent)
            raise Conflict("PUT", doc["_id"], 409, "conflict", "a concurrent write reached the write quorum first")
        return result

    async def _lost_race(self, docid: str, rev: str) -> bool:
        """After CouchDB answered 202 for a write that made ``rev``: stored, but not on a
        write quorum. Either nodes are down (the write stands, and the caller is told), or
        on a cluster another sidecar's write from the same revision reached other copies,
        leaving two live leaves: then both callers would think they won and a merge would
        drop one acknowledged write, so ours counts as lost (``_undo``)."""
        self.stats.writes_below_quorum += 1
        self.stats.last_below_quorum = time.monotonic()
        generation = documents.rev_key(rev)[0]
        rivals = [leaf["ok"]["_rev"] for leaf in await self.db.open_revs(docid)
                  if isinstance(leaf.get("ok"), dict) and not leaf["ok"].get("_deleted")
                  and leaf["ok"]["_rev"] != rev and documents.rev_key(leaf["ok"]["_rev"])[0] >= generation]
        if rivals:
            self.stats.quorum_races_lost += 1
            log.warning("document %s: a write stored below quorum raced revision %s; undone", docid, rivals[0])
        return bool(rivals)

    async def _undo(self, docid: str, rev: str, parent: dict | None) -> None:
        """Put what our leaf overwrote back on top of it (or delete it if it overwrote
        nothing). The restored content is older than any concurrent write, so merging
        always prefers the other writes; and if every racer undid its own, the document
        is simply what it was before — nothing vanishes. Best effort: a leaf left as it
        is gets merged like any conflict."""
        try:
            if parent is None:
                await self.db.delete(docid, rev)
            else:
                await self.db.put({**reconcile.strip(parent), "_rev": rev})
        except CouchDBError as exc:
            log.warning("document %s: could not undo revision %s: %s", docid, rev, exc)

    async def _protect(self, model: ModelType, docid: str, props: dict, kept: dict | None = None) -> dict:
        """Stored forms of ``props`` (bcrypt in the thread pool) plus ``kept`` ones as they are."""
        loop = asyncio.get_running_loop()
        stored = {}
        for name, value in props.items():
            prop = model.properties[name]
            if prop.protection == "bcrypt":
                cost = prop.bcrypt_cost or DEFAULT_BCRYPT_COST
                stored[name] = await loop.run_in_executor(self.hasher, hash_password, value, cost)
            else:
                stored[name] = self.protector.protect(model, docid, name, value)
        return {**stored, **(kept or {})}

    async def replace(self, model: ModelType, docid: str, body: Any, if_match: Revisions) -> Written:
        _validate(model, body)
        async with self._serialized(docid):
            current = await self.read(model, docid)
            self._check_revision(model, current, if_match)
            return await self._write_checked(model, current, await self._protect_update(model, current, body, {}))

    async def patch(self, model: ModelType, docid: str, patch: Any, if_match: Revisions | None) -> Written:
        """RFC 7396 merge patch. With ``if_match`` it is a checked write; without,
        the sidecar re-reads and retries on conflicts (bounded, jittered)."""
        if not isinstance(patch, dict):
            raise ValidationFailed([Violation("", "a merge patch for a document must be an object")])
        _check_reserved(patch)
        if if_match is not None:
            async with self._serialized(docid):
                current = await self.read(model, docid)
                self._check_revision(model, current, if_match)
                return await self._write_checked(model, current, await self._patched(model, current, patch))
        for attempt in range(self.patch_retry.attempts):
            try:
                async with self._serialized(docid):
                    current = await self.read(model, docid)
                    return await self._write_over(model, current, await self._patched(model, current, patch))
            except Conflict:
                self.stats.write_conflicts += 1
                self.stats.patch_retries += 1
                await self._sleep(self.patch_retry.delay(attempt))
        raise RetriesExhausted(docid)

    async def _patched(self, model: ModelType, current: dict, patch: dict) -> dict:
        """Stored properties after ``patch``: applied to the readable values in clear;
        hashed values the patch does not touch are kept as stored."""
        merged = documents.merge_patch(self._revealed(model, current), patch)
        kept = {name: value for name, value in documents.properties(current).items()
                if name in model.properties and not model.properties[name].readable and name not in patch}
        model.validate(merged, kept=frozenset(kept))
        return await self._protect_update(model, current, merged, kept)

    async def _protect_update(self, model: ModelType, current: dict, clear: dict, kept: dict) -> dict:
        """``_protect`` for a write over ``current``: an ``immutable`` property already
        set must keep its value (else ValidationFailed) and keeps its stored form."""
        same, wrong = {}, []
        for name, prop in model.properties.items():
            if not prop.immutable or name not in current or name in kept:
                continue
            if name not in clear:
                wrong.append(Violation(f"/{name}", "is immutable: it cannot be removed once set"))
            elif self._holds(model, current, name, clear[name]):
                same[name] = current[name]
            else:
                wrong.append(Violation(f"/{name}", "is immutable: it cannot be changed once set"))
        if wrong:
            raise ValidationFailed(wrong)
        props = {name: value for name, value in clear.items() if name not in same}
        return await self._protect(model, current["_id"], props, {**kept, **same})

    def _holds(self, model: ModelType, doc: dict, name: str, value: Any) -> bool:
        """Whether ``doc`` stores ``value`` for ``name`` (not for bcrypt: models forbid it)."""
        stored, protection = doc[name], model.properties[name].protection
        try:
            if protection == "sha3-512":
                return self.protector.matches_hash(model, name, value, stored)
            return self.protector.reveal(model, doc["_id"], name, stored) == value
        except (ValueError, IntegrityViolation, KeyUnavailable):
            return False

    async def _write_over(self, model: ModelType, current: dict, stored: dict) -> Written:
        """Write ``stored`` properties over ``current``, signed; Conflict propagates."""
        doc = documents.replaced(model, current, stored, documents.now())
        doc = self.protector.sign(reconcile.stamp(model, self.protector, current, doc, self.writer))
        result = await self._put(doc, current)
        return Written({**doc, "_rev": result.rev}, below_quorum=result.accepted)

    async def _write_checked(self, model: ModelType, current: dict, stored: dict) -> Written:
        """``_write_over`` for a caller who named a revision: a 409 is StaleRevision."""
        try:
            return await self._write_over(model, current, stored)
        except Conflict:
            raise await self._stale(model, current["_id"]) from None

    async def delete(self, model: ModelType, docid: str, if_match: Revisions) -> bool:
        """Hard delete, or for ``delete: soft`` types keep the doc marked deleted.
        True when CouchDB stored it below the write quorum (202)."""
        async with self._serialized(docid):
            current = await self.read(model, docid)
            self._check_revision(model, current, if_match)
            try:
                if model.delete_policy == "soft":
                    doc = documents.soft_deleted(current, documents.now())
                    result = await self._put(self.protector.sign(
                        reconcile.stamp(model, self.protector, current, doc, self.writer)), current)
                else:
                    result = await self.db.delete(docid, current["_rev"])
                    if result.accepted and await self._lost_race(docid, result.rev):  # a tombstone is no leaf
                        raise Conflict("DELETE", docid, 409, "conflict", "a concurrent write reached the quorum")
            except Conflict:
                raise await self._stale(model, docid) from None
        return result.accepted

    def _check_revision(self, model: ModelType, current: dict, if_match: Revisions) -> None:
        if ANY_REVISION not in if_match and current["_rev"] not in if_match:
            self.stats.stale_revisions += 1
            raise StaleRevision(current, self.representation(model, current))

    async def _stale(self, model: ModelType, docid: str) -> StaleRevision:
        """After CouchDB's 409 on a write the caller named a revision for."""
        self.stats.write_conflicts += 1
        self.stats.stale_revisions += 1
        current = await self.read(model, docid)
        return StaleRevision(current, self.representation(model, current))


def _check_reserved(body: dict) -> None:
    reserved = [Violation(f"/{name}", "reserved name") for name in body if is_reserved(name)]
    if reserved:
        raise ReservedNames(reserved)


def _validate(model: ModelType, body: Any) -> None:
    if isinstance(body, dict):
        _check_reserved(body)
    model.validate(body)
