"""Replication conflicts: the reconciler behind every read, the sweeper and
``data-service reconcile`` (I/O; the rules are ``rules``, the merge is signed by
``lifecycle``).

Which leaves take part
    Every live leaf (deleted leaves are not conflicts). Each one's signature is verified
    first: a leaf that fails — edited outside the service, or signed for another
    revision generation than the one it is stored at (an old body injected with
    ``new_edits: false``) — is *discarded*: never merged or re-signed, deleted with the
    other losers, logged, counted in ``integrity_violations`` and
    ``conflict_leaves_discarded`` and listed by ``reconcile``. A leaf this sidecar cannot
    verify (a signing key it does not hold — perhaps a newer one — or a disabled one),
    or of another type, makes the conflict unresolvable for now: nothing is deleted.
    Leaves of an older version of the type are upgraded before they are merged.
    Two claims of one Idempotency-Key (verified records, no type) keep the highest.

Writing the result
    The merge is signed and written on top of the highest valid leaf *first*; only then
    are the other leaves deleted (``_bulk_docs`` with ``_deleted: true``). A crash in
    between loses nothing: the next pass finds the old leaves again and merging them into
    the already merged winner changes nothing (merging is idempotent), so it only deletes
    them. A 409 on the winner write means someone else changed or resolved the document:
    it is read again and the work redone (a few times, then left to the next pass). When
    the merged document equals the base leaf nothing is written, only losers deleted —
    which is how two sidecars that raced settle: the second finds the first one's result
    and keeps it.

Where it runs
    ``DocumentStore.read`` (every read, write precondition and PATCH) asks CouchDB for
    ``_conflicts`` and reconciles before answering; collection queries ask the view for
    ``_conflicts`` too and reconcile the rows that have them. The ``ds_conflicts`` view
    lists every conflicted document for the sweeper (``sweeper``).
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
from ..couchdb import CouchDBError, Database
from ..envelope import model_of, rev_key, strip
from ..lifecycle import Lifecycle
from ..models import MigrationFailed, ModelType
from ..protection import IntegrityViolation, KeyUnavailable
from ..retry import RetryPolicy, attempts
from .rules import Unresolvable

log = logging.getLogger("data_service.conflicts")


class Status(StrEnum):
    RESOLVED = "resolved"  # merged and losers deleted
    UNRESOLVABLE = "unresolvable"  # left as it is; ``reason`` says why
    CLEAN = "clean"  # no conflict any more when looked at again
    GONE = "gone"  # deleted meanwhile
    BUSY = "busy"  # kept changing; the next pass retries


@dataclass
class Outcome:
    """What became of one conflicted document (see ``Status``)."""

    docid: str
    status: Status
    reason: str | None = None
    discarded: list[tuple[str, str]] = field(default_factory=list)  # (rev, why): leaves failing their check
    doc: dict | None = None  # the document afterwards (resolved or clean), else CouchDB's winner


@dataclass
class _Plan:
    docid: str
    winner: dict
    outcome: Outcome
    write: dict | None = None
    losers: list[str] = field(default_factory=list)
    retry: bool = False


AfterWinnerWrite = Callable[[list[str]], Awaitable[Any]]


class Reconciler:
    """Reconciles conflicted documents of one database. ``stats`` is the store's
    ``Stats`` (conflicts_found/resolved/unresolvable, conflict_leaves_discarded,
    integrity_violations). ``after_winner_write`` runs between writing the merged
    winners and deleting the losers (a test seam: raise there to simulate a crash)."""

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
        self.db = db
        self.lifecycle = lifecycle
        self.stats = stats
        self.retry, self._sleep = retry, sleep
        self.after_winner_write = after_winner_write
        self._unresolvable: OrderedDict[str, frozenset] = OrderedDict()  # id → leaf revs (read path)
        self._remember = remember
        self._inflight: dict[str, asyncio.Future] = {}  # reads of one document share one reconciliation

    # -- the read path ----------------------------------------------------------

    async def resolve(self, model: ModelType, doc: dict) -> dict | None:
        """``doc`` (read with ``conflicts=true``) reconciled: the merged document, or
        the winner as read when the conflict is unresolvable, None if it is gone.
        A conflict already found unresolvable with the same leaves is not retried
        (nor logged again) on reads: the sweeper reports it. Concurrent reads of one
        document in this process wait for one reconciliation."""
        docid = doc["_id"]
        task = self._inflight.get(docid)
        if task is None:
            task = asyncio.ensure_future(self._resolve(model, doc))
            self._inflight[docid] = task
            task.add_done_callback(lambda _: self._inflight.pop(docid, None))
        return await asyncio.shield(task)

    async def _resolve(self, model: ModelType, doc: dict) -> dict | None:
        leaves = frozenset([doc["_rev"], *doc.get("_conflicts", ())])
        if self._unresolvable.get(doc["_id"]) == leaves:
            return strip(doc)
        try:
            [outcome] = await self.reconcile([(model, doc)])
        except CouchDBError as exc:  # a read does not fail because its reconciliation did
            log.warning("conflict: document %s not reconciled now: %s", doc["_id"], exc)
            return strip(doc)
        if outcome.status is Status.GONE:
            return None
        if outcome.status is Status.UNRESOLVABLE:
            self._unresolvable[doc["_id"]] = leaves
            self._unresolvable.move_to_end(doc["_id"])
            while len(self._unresolvable) > self._remember:
                self._unresolvable.popitem(last=False)
        return strip(outcome.doc or doc)

    # -- the core ---------------------------------------------------------------

    async def reconcile(self, items: Iterable[tuple[ModelType | None, dict]]) -> list[Outcome]:
        """Reconcile documents read with ``conflicts=true`` (each with its model, None
        when the models file has no such type), in bulk: one ``_bulk_get`` for the
        losing leaves, one ``_bulk_docs`` for the merged winners, one for the deletions."""
        items = list(items)
        order = [doc["_id"] for _, doc in items]
        models = {doc["_id"]: model for model, doc in items}
        final: dict[str, Outcome] = {}
        pending = [doc for _, doc in items]
        async for _ in attempts(self.retry, self._sleep):
            plans = await self._plans([(models[doc["_id"]], doc) for doc in pending])
            writes = [(plan, plan.write) for plan in plans if plan.write is not None and not plan.retry]
            if writes:
                results = await self.db.bulk_docs([write for _, write in writes])
                for (plan, write), result in zip(writes, results, strict=True):
                    if result.get("error") == "conflict":
                        plan.retry = True
                    elif result.get("error"):
                        plan.outcome = Outcome(
                            plan.docid,
                            Status.UNRESOLVABLE,
                            f"CouchDB refused the merged document: {result.get('error')}: {result.get('reason')}",
                            plan.outcome.discarded,
                            plan.winner,
                        )
                        plan.losers = []
                    else:
                        plan.outcome.doc = {**write, "_rev": result["rev"]}
            written = [p.docid for p, _ in writes if not p.retry and p.outcome.status is Status.RESOLVED]
            if written and self.after_winner_write is not None:
                await self.after_winner_write(written)
            deletes = [
                {"_id": plan.docid, "_rev": rev, "_deleted": True}
                for plan in plans
                if not plan.retry and plan.outcome.status is Status.RESOLVED
                for rev in plan.losers
            ]
            if deletes:  # a loser someone else deleted or extended answers 409: fine either way
                for result in await self.db.bulk_docs(deletes):
                    if result.get("error") not in (None, "conflict", "not_found"):
                        log.warning(
                            "conflict: document %s: losing revision not deleted (%s: %s); the next pass retries",
                            result.get("id"),
                            result.get("error"),
                            result.get("reason"),
                        )
            retry = []
            for plan in plans:
                if plan.retry:
                    retry.append(plan.docid)
                else:
                    final[plan.docid] = plan.outcome
            if not retry:
                break
            pending = []
            for docid, doc in (await self.current(retry)).items():
                if doc is None:
                    final[docid] = Outcome(docid, Status.GONE)
                elif not doc.get("_conflicts"):
                    final[docid] = Outcome(docid, Status.CLEAN, doc=doc)
                else:
                    pending.append(doc)
            if not pending:
                break
        else:
            for doc in pending:
                final[doc["_id"]] = Outcome(doc["_id"], Status.BUSY, "kept changing while being reconciled", doc=doc)
        outcomes = [final[docid] for docid in order]
        for outcome in outcomes:
            self._count(outcome)
        return outcomes

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

    async def current(self, docids: list[str]) -> dict[str, dict | None]:
        """The documents by id, with their conflicts (None: gone): quorum reads."""
        rows = (await self.db.all_docs(keys=docids, include_docs=True, conflicts=True)).rows
        return {row["key"]: row.get("doc") for row in rows}

    async def _plans(self, items: list[tuple[ModelType | None, dict]]) -> list[_Plan]:
        wanted = [{"id": doc["_id"], "rev": rev} for _, doc in items for rev in doc.get("_conflicts", ())]
        bodies: dict[tuple[str, str], dict] = {}
        if wanted:
            for result in await self.db.bulk_get(wanted):
                for entry in result.get("docs", ()):
                    body = entry.get("ok")
                    if isinstance(body, dict):
                        bodies[(body["_id"], body["_rev"])] = body
        plans = []
        for model, winner in items:
            docid = winner["_id"]
            leaves = [strip(winner)]
            missing = False
            for rev in winner.get("_conflicts", ()):
                body = bodies.get((docid, rev))
                if body is None or body.get("_deleted"):
                    missing = True  # changed meanwhile: read it again
                else:
                    leaves.append(body)
            plan = _Plan(docid, strip(winner), Outcome(docid, Status.RESOLVED), retry=missing)
            if not missing:
                self._plan(plan, model, leaves)
            plans.append(plan)
        return plans

    def _plan(self, plan: _Plan, model: ModelType | None, leaves: list[dict]) -> None:
        """Verify, merge and decide what to write and delete (no I/O)."""
        plan.outcome.doc = plan.winner
        reason = self._merge(plan, model, leaves)
        if reason is not None:
            plan.outcome.status, plan.outcome.reason = Status.UNRESOLVABLE, reason

    def _merge(self, plan: _Plan, model: ModelType | None, leaves: list[dict]) -> str | None:
        """Fill in ``plan``; the reason the conflict is unresolvable, or None."""
        record = model is None and idempotency.is_record(plan.winner)
        if model is None and not record:
            return f"type {plan.winner.get('type')!r} is not in the models file"
        valid = []
        for leaf in leaves:
            try:
                self.lifecycle.verify(leaf)
            except IntegrityViolation as exc:  # edited, or signed for another generation: never merged
                plan.outcome.discarded.append((leaf["_rev"], exc.reason))
                continue
            except KeyUnavailable as exc:  # perhaps a newer key: left as it is, never deleted
                return f"revision {leaf['_rev']} cannot be verified with this sidecar's keys: {exc}"
            if model is not None and not model_of([model], leaf):
                return f"revision {leaf['_rev']} is a {leaf.get('type')!r}, not a {model.name} v{model.major}"
            if model is None and not idempotency.is_record(leaf):
                return f"revision {leaf['_rev']} is a {leaf.get('type')!r}, not an Idempotency-Key record"
            valid.append(leaf)
        if not valid:
            return "no revision passes its signature check"
        if model is None:  # two claims of one key on two nodes: keep one, in CouchDB's order
            base, plan.write = max(valid, key=lambda leaf: rev_key(leaf["_rev"])), None
        else:
            try:
                base, plan.write = self.lifecycle.reconciled(model, valid)
            except (Unresolvable, MigrationFailed) as exc:
                return str(exc)
        plan.losers = [leaf["_rev"] for leaf in leaves if leaf["_rev"] != base["_rev"]]
        if plan.write is None:
            plan.outcome.doc = base
        return None
