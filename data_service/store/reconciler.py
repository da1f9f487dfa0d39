"""Replication conflicts and deleted leaves above the winner: the reconciler behind
every read, the sweeper and ``data-service reconcile`` (I/O; the rules are ``rules``,
the merge is signed by ``lifecycle``; the design is ``docs/consistency.md``).

What it reads
    Every leaf of the document on every copy (``Reads.leaves``, ``r`` = n on a cluster),
    so it never merges fewer leaves than a racing writer saw.

Which leaves take part
    Every live leaf. Each one's signature is verified first: a leaf that fails — edited
    outside the service, or signed for another generation than the one it is stored at —
    is *discarded*: never merged, removed with the other losers, logged, counted in
    ``integrity_violations`` and ``conflict_leaves_discarded``. A leaf this sidecar
    cannot verify (a signing key it lacks) or of another type makes the conflict
    unresolvable for now: nothing is written. Leaves of an older version of the type are
    upgraded before they are merged. Two claims of one Idempotency-Key keep the highest.

Deleted leaves above the winner
    Each must be a tombstone the service signed, on the revision it names
    (``Lifecycle.removed``). One that is not is a member's rollback: the document is
    *tampered* (reads answer ``integrity_violation``; nothing is written: an operator
    decides). A caller's delete there competes with the live leaves: the later of the
    delete and the merged edit wins. The others (withdrawn, superseded, expired) only
    need the result written above them.

Writing the result
    The merge is signed and written *first*, on the leaf whose content it takes
    (``rules.base``), lifted above every tombstone it must top (one generation per
    write); only then are the other leaves removed with signed ``superseded``
    tombstones. A crash in between loses nothing: the next pass finds the old leaves
    and merging them into the merged winner changes nothing. A 409 on the winner write
    means someone else changed or resolved the document: it is read again and redone
    (a few times, then left to the next pass).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .. import idempotency
from ..conflicts.rules import Unresolvable
from ..couchdb import CouchDBError, Database
from ..envelope import Removed, strip
from ..lifecycle import Lifecycle
from ..models import MigrationFailed, ModelType, model_of
from ..protection import IntegrityViolation, KeyUnavailable
from ..retry import RetryPolicy, attempts
from ..revisions import Leaves, generation, rev_key
from ..vocabulary import Stored
from .reads import Reads

log = logging.getLogger("data_service.conflicts")


class Status(StrEnum):
    RESOLVED = "resolved"  # merged (or deleted by a caller's delete) and losers removed
    UNRESOLVABLE = "unresolvable"  # left as it is; ``reason`` says why
    TAMPERED = "tampered"  # a deleted leaf above the winner that the service did not write: a rollback
    CLEAN = "clean"  # nothing to do when looked at again
    GONE = "gone"  # deleted meanwhile
    BUSY = "busy"  # kept changing; the next pass retries


@dataclass
class Outcome:
    """What became of one document (see ``Status``)."""

    docid: str
    status: Status
    reason: str | None = None
    discarded: list[tuple[str, str]] = field(default_factory=list)  # (rev, why): leaves failing their check
    doc: Stored | None = None  # the document afterwards (resolved or clean), else the winner as read


@dataclass
class _Plan:
    docid: str
    outcome: Outcome
    base: Stored | None = None  # the leaf the result is written on
    write: Stored | None = None  # the signed result to write on ``base`` (None: ``base`` is the result)
    losers: list[Stored] = field(default_factory=list)  # live leaves to remove
    floor: int = 0  # the generation the result must reach (every tombstone at or below it)
    retry: bool = False

    @property
    def result(self) -> Stored | None:
        return self.write or self.base


AfterWinnerWrite = Callable[[list[str]], Awaitable[Any]]


class Reconciler:
    """Reconciles documents of one database. ``stats`` is the store's ``Stats``;
    ``after_winner_write`` runs between writing the merged winners and removing the
    losers (a test seam: raise there to simulate a crash)."""

    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        stats: Any,
        *,
        retry: RetryPolicy = RetryPolicy(attempts=5, base=0.01, cap=0.1),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        after_winner_write: AfterWinnerWrite | None = None,
        remember: int = 1024,
    ) -> None:
        self.db, self.reads = db, Reads(db)
        self.lifecycle = lifecycle
        self.stats = stats
        self.retry, self._sleep = retry, sleep
        self.after_winner_write = after_winner_write
        self._unresolvable: OrderedDict[str, frozenset[str]] = OrderedDict()  # id → leaf revs (read path)
        self._remember = remember
        self._inflight: dict[str, asyncio.Future[Any]] = {}  # reads of one document share one reconciliation

    # -- the read path ----------------------------------------------------------

    async def resolve(
        self, model: ModelType, doc: Stored, leaves: frozenset[str], above: bool = False
    ) -> Stored | None:
        """``doc`` (the winner as read, with ``leaves`` its live leaf revisions; ``above``:
        deleted leaves above it) reconciled: the document afterwards, the winner as read
        when its conflict cannot be resolved now, None if it is gone. IntegrityViolation
        when it was rolled back; the CouchDB error when deleted leaves above it could not
        be checked (a rollback is never served unchecked). A document found unresolvable
        with the same leaves is not retried (nor logged again) on reads: the sweeper
        reports it. Concurrent reads of one document in this process wait for one
        reconciliation."""
        docid = doc["_id"]
        if self._unresolvable.get(docid) == leaves:
            return strip(doc)
        task = self._inflight.get(docid)
        if task is None:
            task = asyncio.ensure_future(self.reconcile([(model, docid)]))
            self._inflight[docid] = task
            task.add_done_callback(lambda _: self._inflight.pop(docid, None))
        try:
            [outcome] = await asyncio.shield(task)
        except CouchDBError as exc:  # a read does not fail because its merge did
            log.warning("conflict: document %s not reconciled now: %s", docid, exc)
            if above:
                raise
            return strip(doc)
        if outcome.status is Status.TAMPERED:
            raise IntegrityViolation(docid, outcome.reason or "rolled back")
        if outcome.status is Status.GONE or (outcome.status is Status.RESOLVED and outcome.doc is None):
            return None
        if outcome.status is Status.UNRESOLVABLE:
            self._unresolvable[docid] = leaves
            self._unresolvable.move_to_end(docid)
            while len(self._unresolvable) > self._remember:
                self._unresolvable.popitem(last=False)
        return strip(outcome.doc or doc)

    # -- the core ---------------------------------------------------------------

    async def reconcile(self, items: Iterable[tuple[ModelType | None, str]]) -> list[Outcome]:
        """Reconcile documents by id (each with its model, None when the models file has
        no such type), in bulk: one read of every leaf, one write of the results, one
        removal of the losers."""
        items = list(items)
        models = dict((docid, model) for model, docid in items)
        final: dict[str, Outcome] = {}
        pending = list(models)
        async for _ in attempts(self.retry, self._sleep):
            found = await self.reads.leaves(pending, every_copy=True)
            plans = [self._plan(docid, models[docid], found[docid]) for docid in pending]
            await self._write(plans)
            pending = []
            for plan in plans:
                (pending.append(plan.docid) if plan.retry else final.__setitem__(plan.docid, plan.outcome))
            if not pending:
                break
        else:
            for docid in pending:
                final[docid] = Outcome(docid, Status.BUSY, "kept changing while being reconciled")
        outcomes = [final[docid] for _, docid in items]
        for outcome in outcomes:
            self._count(outcome)
        return outcomes

    def _plan(self, docid: str, model: ModelType | None, leaves: Leaves) -> _Plan:
        """Verify, merge and decide what to write and remove (no I/O)."""
        if leaves.winner is None:
            return _Plan(docid, Outcome(docid, Status.GONE))
        plan = _Plan(docid, Outcome(docid, Status.RESOLVED, doc=strip(leaves.winner)))
        deletes, reason = self._above(plan, leaves)
        if reason is not None:
            plan.outcome.status, plan.outcome.reason = Status.TAMPERED, reason
            return plan
        live = [strip(leaves.winner), *(strip(leaf) for leaf in leaves.conflicts)]
        reason = self._merge(plan, model, live)
        if reason is not None:
            plan.outcome.status, plan.outcome.reason = Status.UNRESOLVABLE, reason
            plan.base = plan.write = None
            plan.losers = []
            return plan
        if deletes and max(str(d["meta"].get("deleted_at")) for d in deletes) > _updated(plan.result):
            plan.losers, plan.base, plan.write = live, None, None  # the caller's delete is the later event
            plan.outcome.doc = None
            return plan
        plan.floor = max([plan.floor, *(rev_key(leaf["_rev"])[0] + 1 for leaf in plan.losers)])
        if plan.write is None and not plan.losers and _gen(plan.base) >= plan.floor:
            plan.outcome.status, plan.base = Status.CLEAN, None
        return plan

    def _above(self, plan: _Plan, leaves: Leaves) -> tuple[list[Stored], str | None]:
        """The callers' deletes among the deleted leaves above the winner, and the reason
        the document is tampered (None: it is not)."""
        deletes = []
        for leaf in leaves.above():
            try:
                removed = self.lifecycle.removed(leaf)
            except (IntegrityViolation, KeyUnavailable) as exc:
                reason = exc.reason if isinstance(exc, IntegrityViolation) else str(exc)
                return [], f"deleted revision {leaf['_rev']} above the live one is not the service's: {reason}"
            if removed is Removed.DELETE:
                deletes.append(leaf)
            plan.floor = max(plan.floor, rev_key(leaf["_rev"])[0])
        return deletes, None

    def _merge(self, plan: _Plan, model: ModelType | None, leaves: list[Stored]) -> str | None:
        """Fill in ``plan``; the reason the conflict is unresolvable, or None."""
        record = model is None and idempotency.is_record(leaves[0])
        if model is None and not record:
            return f"type {leaves[0].get('type')!r} is not in the models file"
        valid = []
        for leaf in leaves:
            try:
                self.lifecycle.check_signature(leaf)
            except IntegrityViolation as exc:  # edited, or signed for another generation: never merged
                plan.outcome.discarded.append((leaf["_rev"], exc.reason))
                continue
            except KeyUnavailable as exc:  # perhaps a newer key: left as it is, never removed
                return f"revision {leaf['_rev']} cannot be verified with this sidecar's keys: {exc}"
            if model is not None and not model_of([model], leaf):
                return f"revision {leaf['_rev']} is a {leaf.get('type')!r}, not a {model.name} v{model.major}"
            if model is None and not idempotency.is_record(leaf):
                return f"revision {leaf['_rev']} is a {leaf.get('type')!r}, not an Idempotency-Key record"
            valid.append(leaf)
        if not valid:
            return "no revision passes its signature check"
        if model is None:  # two claims of one key on two nodes: keep one, in CouchDB's order
            plan.base, plan.write = max(valid, key=lambda leaf: rev_key(leaf["_rev"])), None
        else:
            try:
                plan.base, plan.write = self.lifecycle.reconciled(model, valid)
            except (Unresolvable, MigrationFailed) as exc:
                return str(exc)
        plan.losers = [leaf for leaf in leaves if leaf["_rev"] != plan.base["_rev"]]
        return None

    async def _write(self, plans: list[_Plan]) -> None:
        """The results first (lifted to their floor), then the losers' tombstones."""

        def due(plan: _Plan) -> bool:
            return plan.base is not None and (plan.write is not None or _gen(plan.base) < plan.floor)

        lifting = [plan for plan in plans if plan.outcome.status is Status.RESOLVED and due(plan)]
        while lifting:
            docs = [plan.write or self.lifecycle.rewritten(plan.base or {}) for plan in lifting]
            for plan, doc, saved in zip(lifting, docs, await self.db.save(docs), strict=True):
                if saved.rev is None:
                    plan.retry = saved.error == "conflict"
                    if not plan.retry:
                        plan.outcome = Outcome(
                            plan.docid, Status.UNRESOLVABLE, f"CouchDB refused the merged document: {saved.error}"
                        )
                    continue
                plan.base, plan.write = {**doc, "_rev": saved.rev}, None
                plan.outcome.doc = plan.base
            lifting = [plan for plan in lifting if not plan.retry and due(plan)]
        done = [plan for plan in plans if not plan.retry and plan.outcome.status is Status.RESOLVED]
        if done and self.after_winner_write is not None:
            await self.after_winner_write([plan.docid for plan in done])
        tombstones = [self.lifecycle.tombstone(leaf, Removed.SUPERSEDED) for plan in done for leaf in plan.losers]
        for saved in await self.db.save(tombstones) if tombstones else ():
            if saved.error not in (None, "conflict", "not_found"):  # 409: removed or extended by someone else
                log.warning(
                    "conflict: document %s: losing revision not removed (%s: %s); the next pass retries",
                    saved.id,
                    saved.error,
                    saved.reason,
                )

    def _count(self, outcome: Outcome) -> None:
        self.stats.conflicts_found += 1
        for rev, why in outcome.discarded:
            self.stats.integrity_violations += 1
            self.stats.conflict_leaves_discarded += 1
            log.warning("conflict: document %s: revision %s discarded: %s", outcome.docid, rev, why)
        if outcome.status is Status.RESOLVED:
            self.stats.conflicts_resolved += 1
        elif outcome.status is Status.UNRESOLVABLE:
            self.stats.conflicts_unresolvable += 1
            log.warning("conflict: document %s cannot be reconciled: %s", outcome.docid, outcome.reason)
        elif outcome.status is Status.TAMPERED:
            self.stats.integrity_violations += 1
            log.warning("integrity violation: document %s: %s", outcome.docid, outcome.reason)


def _gen(doc: Stored | None) -> int:
    return generation(doc["_rev"]) or 0 if doc else 0


def _updated(doc: Stored | None) -> str:
    meta = doc.get("meta") if doc else None
    return str(meta.get("updated_at") or "") if isinstance(meta, dict) else ""
