"""Idempotency-Key records in CouchDB (what they are: ``idempotency``), for one create
or a batch of them: one read of the records, one write of the new claims.

A record is verified before anything in it is believed (an edited one is an
integrity violation, never a reason to create twice). A live, unexpired record turns
its create into a replay of the document it names: answered as it is,
``idempotency_key_consumed`` if it was deleted since, and if it was never stored,
created now once the claim is settled (``_replay``), else 503 to retry. A key claimed
by another request at the same moment is followed the same way.

On a cluster (docs/consistency.md §2): records are read from every copy. A claim every copy
stored (201) is the key's only claim, ever: each copy refuses a second create of the record.
A claim stored below quorum (202) looks at every copy's claims: two that raced both name the
highest revision the winner (the reconciler keeps that one too), so one of them creates. A
copy it could not reach may hold a claim made in a partition, so its create is answered
``Write-Quorum: not-met``: the key's one document is provisional until the copies meet.
"""

from __future__ import annotations

import datetime as dt

from .. import idempotency
from ..couchdb import Database, IdPool
from ..design import IDEMPOTENCY_NAME, VIEW
from ..envelope import Removed, now
from ..errors import ServiceError
from ..lifecycle import Lifecycle
from ..models import ModelType
from ..revisions import rev_key
from ..vocabulary import Stored
from .change import Change
from .errors import IdempotencyMismatch, RetriesExhausted
from .reads import Reads

ROUNDS = 5  # claims lost to concurrent claimers before giving up


class Claims:
    def __init__(self, db: Database, ids: IdPool, lifecycle: Lifecycle, ttl: float) -> None:
        self.db, self.ids, self.lifecycle, self.ttl = db, ids, lifecycle, ttl
        self.reads = Reads(db)

    async def claim(self, model: ModelType, changes: list[Change]) -> None:
        """Give each keyed create its document id: a new one it claimed, or the one its
        key's record names (``replay``: the pipeline answers with that document)."""
        for _ in range(ROUNDS):
            if not changes:
                return
            # every copy: a claim stored below quorum by an attempt whose answer was lost is on
            # copies a quorum read may not ask (issue 21: one key, two documents)
            ids = (idempotency.record_id(model.name, c.key or "") for c in changes)
            records = await self.reads.many(ids, every_copy=True)
            claims, lost = [], []
            for change in changes:
                held = records[idempotency.record_id(model.name, change.key or "")]
                try:
                    record = self.lifecycle.open_record(model.name, change.key or "", held.doc) if held.doc else None
                except ServiceError as exc:
                    change.answer = exc
                    continue
                if record is not None and not idempotency.expired(record, dt.datetime.now(dt.UTC)):
                    self._replay(change, record)
                    continue
                change.docid = await self.ids.take()
                at = dt.datetime.now(dt.UTC)
                key, values = change.key or "", change.values
                claim = self.lifecycle.claim(model, key, change.docid, values, at, self.ttl, record, held.tombstone)
                claims.append((change, claim))
            saved = await self.db.save([claim for _, claim in claims]) if claims else []
            for (change, claim), result in zip(claims, saved, strict=True):
                if result.rev is None or (result.accepted and not await self._won(claim["_id"], result.rev)):
                    change.docid = None
                    lost.append(change)  # claimed by another request meanwhile: follow its record
                    # every copy holds its claim or a rival's (it was stored, or refused as a
                    # conflict): no other claim can appear, so the one it follows is settled
                    change.may_complete = result.rev is not None or result.error == "conflict"
                elif result.accepted:  # a copy that did not store it may hold another claim (a partition)
                    change.key_provisional = True
            changes = lost
        for change in changes:
            change.answer = RetriesExhausted(change.key)

    async def _won(self, record_id: str, rev: str) -> bool:
        """A claim stored below quorum: whether it is the highest live claim on any copy."""
        leaves = await self.db.open_revs(record_id, r=await self.db.copies())
        live = [
            entry["ok"]["_rev"]
            for entry in leaves
            if isinstance(entry.get("ok"), dict) and not entry["ok"].get("_deleted")
        ]
        return max(live, key=rev_key, default=rev) == rev

    @staticmethod
    def _replay(change: Change, record: Stored) -> None:
        """Answer with the document ``record`` names. If it is missing, create it only when
        the claim is settled: this request's own claim lost to it (every copy holds one of
        the two, so no other can appear), or it is older than ``SETTLE``. A younger one may
        still lose to a rival on a copy this read did not see, whose claimer creates too."""
        if record["body"] != idempotency.body_digest(change.values):
            change.answer = IdempotencyMismatch(change.key)
        else:
            change.docid, change.replay = record["doc_id"], True
            change.may_complete = change.may_complete or idempotency.settled(record, dt.datetime.now(dt.UTC))

    async def expire(self, page: int = 500) -> int:
        """Remove expired records with signed tombstones (the background sweep); how many."""
        removed = 0
        while True:
            rows = (await self.db.view(IDEMPOTENCY_NAME, VIEW, endkey=now(), limit=page)).rows
            if not rows:
                return removed
            stubs = [{"_id": row["id"], "_rev": row["value"], "type": idempotency.TYPE} for row in rows]
            saved = await self.db.save([self.lifecycle.tombstone(stub, Removed.EXPIRED) for stub in stubs])
            removed += sum(1 for result in saved if result.rev)
            if len(rows) < page:
                return removed
