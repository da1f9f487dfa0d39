"""Typed documents in CouchDB: create, read, replace, patch, delete.

The rules live here, apart from HTTP: ids from the ``_uuids`` pool and created
with PUT (a retried create never duplicates), revision checks, the sidecar's
own read-modify-write loop for PATCH, soft deletes, idempotency keys.
Errors are the exceptions below; ``problems.py`` says how each is answered.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Awaitable, Callable

import orjson

from . import documents
from .couchdb import Conflict, Database, IdPool, NotFound
from .models import ModelType, ValidationFailed, Violation, is_reserved
from .retry import RetryPolicy

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


class DocumentStore:
    def __init__(
        self,
        db: Database,
        ids: IdPool,
        patch_retry: RetryPolicy = RetryPolicy(attempts=30, base=0.01, cap=0.25),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.ids = ids
        self.patch_retry = patch_retry
        self._sleep = sleep

    # -- reading ----------------------------------------------------------------

    async def read(self, model: ModelType, docid: str) -> dict:
        try:
            doc = await self.db.get(docid)
        except NotFound:
            raise DocumentNotFound(docid) from None
        if not documents.is_of(model, doc) or documents.is_deleted(doc):
            raise DocumentNotFound(docid)
        return doc

    def representation(self, model: ModelType, doc: dict) -> dict:
        return documents.representation(model, doc, documents.properties(doc))

    # -- writing ----------------------------------------------------------------

    async def create(self, model: ModelType, body: Any, idempotency_key: str | None = None) -> tuple[dict, bool]:
        """Store a new document; returns (doc, created). A replayed Idempotency-Key
        returns the first document with ``created=False``."""
        _validate(model, body)
        if idempotency_key is None:
            doc, _ = await self._insert(model, await self.ids.take(), body)
            return doc, True  # a 409 here can only be our own retried PUT
        digest = hashlib.sha256(f"{model.name}\0{idempotency_key}".encode()).hexdigest()
        record_id = f"_local/idempotency_{digest}"
        body_hash = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        while True:
            try:
                record = await self.db.get(record_id)
            except NotFound:
                docid = await self.ids.take()
                try:  # claim the key first; the loser of a race reads the winner's record
                    await self.db.put({"_id": record_id, "doc_id": docid, "body_hash": body_hash})
                except Conflict:
                    continue
                return await self._insert(model, docid, body)
            if record["body_hash"] != body_hash:
                raise IdempotencyMismatch(idempotency_key)
            try:
                return await self.read(model, record["doc_id"]), False
            except DocumentNotFound:  # claimed, not stored yet (in flight, or that attempt died)
                return await self._insert(model, record["doc_id"], body)

    async def _insert(self, model: ModelType, docid: str, props: dict) -> tuple[dict, bool]:
        """PUT a new document; (doc, True) if this call stored it. A 409 with the same
        content means the doc is already there (our retried PUT, or a twin request)."""
        doc = documents.new(model, docid, props, documents.now())
        try:
            result = await self.db.put(doc)
        except Conflict:
            existing = await self.db.get(docid)
            if existing.get("type") == doc["type"] and documents.properties(existing) == props:
                return existing, False
            raise
        return {**doc, "_rev": result.rev}, True

    async def replace(self, model: ModelType, docid: str, body: Any, if_match: Revisions) -> dict:
        _validate(model, body)
        current = await self.read(model, docid)
        return await self._write_over(model, current, body, if_match)

    async def patch(self, model: ModelType, docid: str, patch: Any, if_match: Revisions | None) -> dict:
        """RFC 7396 merge patch. With ``if_match`` it is a checked write; without,
        the sidecar re-reads and retries on conflicts (bounded, jittered)."""
        if not isinstance(patch, dict):
            raise ValidationFailed([Violation("", "a merge patch for a document must be an object")])
        _check_reserved(patch)
        if if_match is not None:
            current = await self.read(model, docid)
            return await self._write_over(model, current, self._patched(model, current, patch), if_match)
        for attempt in range(self.patch_retry.attempts):
            current = await self.read(model, docid)
            doc = documents.replaced(model, current, self._patched(model, current, patch), documents.now())
            try:
                return {**doc, "_rev": (await self.db.put(doc)).rev}
            except Conflict:
                await self._sleep(self.patch_retry.delay(attempt))
        raise RetriesExhausted(docid)

    def _patched(self, model: ModelType, current: dict, patch: dict) -> dict:
        props = documents.merge_patch(documents.properties(current), patch)
        _validate(model, props)
        return props

    async def _write_over(self, model: ModelType, current: dict, props: dict, if_match: Revisions) -> dict:
        self._check_revision(model, current, if_match)
        doc = documents.replaced(model, current, props, documents.now())
        try:
            result = await self.db.put(doc)
        except Conflict:
            raise await self._stale(model, current["_id"]) from None
        return {**doc, "_rev": result.rev}

    async def delete(self, model: ModelType, docid: str, if_match: Revisions) -> None:
        """Hard delete, or for ``delete: soft`` types keep the doc marked deleted."""
        current = await self.read(model, docid)
        self._check_revision(model, current, if_match)
        try:
            if model.delete_policy == "soft":
                await self.db.put(documents.soft_deleted(current, documents.now()))
            else:
                await self.db.delete(docid, current["_rev"])
        except Conflict:
            raise await self._stale(model, docid) from None

    def _check_revision(self, model: ModelType, current: dict, if_match: Revisions) -> None:
        if ANY_REVISION not in if_match and current["_rev"] not in if_match:
            raise StaleRevision(current, self.representation(model, current))

    async def _stale(self, model: ModelType, docid: str) -> StaleRevision:
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
