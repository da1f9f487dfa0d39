"""Idempotency-Key records in CouchDB (what they are: ``idempotency``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import idempotency
from ..couchdb import Conflict, Database, NotFound
from ..design import IDEMPOTENCY_NAME, VIEW
from ..envelope import now
from ..lifecycle import Lifecycle
from ..models import ModelType
from ..protection import IntegrityViolation
from .writes import Writes


class Claims:
    def __init__(self, db: Database, lifecycle: Lifecycle, writes: Writes, ttl: float) -> None:
        self.db, self.lifecycle, self.writes, self.ttl = db, lifecycle, writes, ttl

    async def record(self, model: ModelType, key: str) -> dict | None:
        """The verified record of ``key`` (perhaps expired: see ``expired``), or None."""
        try:
            record = await self.db.get(idempotency.record_id(model.name, key))
        except NotFound:
            return None
        self.lifecycle.verify(record)
        if record.get("key") != idempotency.key_digest(model.name, key):
            raise IntegrityViolation(record["_id"], "idempotency record of another key")
        return record

    async def claim(self, model: ModelType, key: str, docid: str, body: Any, current: dict | None) -> bool:
        """Claim ``key`` for ``docid`` (over an expired ``current`` record, or the tombstone
        of one the sweep deleted: CouchDB continues its branch, and the signature names
        the generation); False if another request claimed it first."""
        tombstone = None
        if current is None:
            state = await self.db.revision(idempotency.record_id(model.name, key))
            tombstone = state[0] if state is not None and state[1] else None
        now = dt.datetime.now(dt.UTC)
        record = self.lifecycle.claim(model, key, docid, body, now, self.ttl, current, tombstone)
        try:
            await self.writes.put(record, current)
        except Conflict:
            return False
        return True

    @staticmethod
    def expired(record: dict) -> bool:
        return idempotency.expired(record, dt.datetime.now(dt.UTC))

    async def expire(self, page: int = 500) -> int:
        """Delete expired records (the background sweep); how many."""
        deleted = 0
        while True:
            rows = (await self.db.view(IDEMPOTENCY_NAME, VIEW, endkey=now(), limit=page)).rows
            if not rows:
                return deleted
            results = await self.db.bulk_docs(
                [{"_id": row["id"], "_rev": row["value"], "_deleted": True} for row in rows]
            )
            deleted += sum(1 for result in results if result.get("ok"))
            if len(rows) < page:
                return deleted
