"""Replication conflicts: the merge rules, the bookkeeping writes keep for them, and
the reconciler behind every read, the background sweeper and ``data-service reconcile``.

When two CouchDB nodes (or data centres) accept writes to one document before they
replicate, both revisions survive as *leaves* and CouchDB picks one as the winner,
listing the others in ``_conflicts``. It never merges them. The reconciler does,
following the type's ``conflict`` policy from the models file.

Which leaves take part
    Every live leaf (deleted leaves are not conflicts). Each one's signature is verified
    first: a leaf that fails (edited outside the service) is *discarded* — never merged,
    deleted with the other losers, logged, counted in ``integrity_violations`` and
    ``conflict_leaves_discarded`` and listed by ``reconcile``. A leaf signed with a
    disabled key, or of another type, makes the conflict unresolvable.

``conflict: latest`` (the default)
    The whole leaf with the greatest ``meta.updated_at`` wins; equal times are broken by
    revision (higher generation, then the greater revision hash — CouchDB's own order).

``conflict: merge``
    Property by property. Each write records, in ``meta.changed``, the time each property
    last changed (set, changed or removed); properties the write left alone keep their
    time. A property is taken from the leaf with the latest time for it (ties: revision
    as above), including its absence when that leaf removed it. Hence edits of different
    properties on different nodes are all kept. Leaves written before the type tracked
    changes count their present properties as changed at their ``updated_at``.

    ``merge: set`` (arrays): the union of every leaf's items (compared as JSON values), in
    the order of the leaf the rule above would pick, then the items only other leaves
    hold, in their order (leaves by time, then revision). A union keeps an item one node
    removed while another node's leaf still holds it: remove items without concurrent
    writers, or accept that they come back.

    ``merge: counter`` (integers/numbers, protection plain): a write never stores just a
    value. ``meta.counters.<prop>`` holds ``base`` (the value at creation) and, per writer
    (a random id each sidecar process draws at start), the sum of its increments (``inc``)
    and of its decrements (``dec``); each write adds its difference to the previous value
    to its own writer's entry, so the value is always ``base + sum(inc) - sum(dec)``. The
    merge takes, per writer, the largest ``inc`` and ``dec`` any leaf holds (a writer's
    sums only grow along its own history) and recomputes the value: increments made on
    different nodes all count, none twice. A write that sets a counter (to 0, say) is the
    decrement or increment it makes. Whether the property is present at all follows the
    per-property rule above. Leaves that disagree on ``base`` are unresolvable.

    The merged document's ``updated_at``, ``deleted_at`` (soft delete) and type tag come
    from the leaf with the latest ``updated_at``: a soft delete that is the last edit
    stays deleted. ``created_at`` is the earliest one.

``immutable: true`` (both policies)
    The property can be set once and never changed or removed by a write (422). If valid
    leaves hold different values, the conflict is *unresolvable*: logged, counted in
    ``conflicts_unresolvable``, reported by every sweep, never guessed; reads return
    CouchDB's winner meanwhile. A leaf that lacks the property takes it from the others.

A merged set or counter that would break its JSON Schema (``maxItems``, ``minimum`` …)
is unresolvable too.

Times are the writing sidecars' clocks (millisecond timestamps): keep nodes in NTP
sync. Hard deletes are not conflicts to CouchDB (a deleted leaf never shows in
``_conflicts``; it picks a live leaf as winner), so an edit concurrent with a hard
delete survives it; declare ``delete: soft`` where the delete must be able to win.

Writing the result
    The merge depends only on the leaves (their bodies and revisions), never on which
    one CouchDB shows as winner or on the clock, so two sidecars reconciling the same
    document compute the same document. It is signed and written on top of the highest
    valid leaf *first*; only then are the other leaves deleted (``_bulk_docs`` with
    ``_deleted: true``). A crash in between loses nothing: the next pass finds the old
    leaves again and merging them into the already merged winner changes nothing
    (merging is idempotent), so it only deletes them. A 409 on the winner write means
    someone else changed or resolved the document: it is read again and the work redone
    (a few times, then left to the next pass). When the merged document equals the base
    leaf nothing is written, only losers deleted — which is how two sidecars that raced
    settle: the second finds the first one's result and keeps it.

Where it runs
    ``DocumentStore.read`` (every read, write precondition and PATCH) asks CouchDB for
    ``_conflicts`` and reconciles before answering; collection queries ask the view for
    ``_conflicts`` too (``conflicts=true`` with ``include_docs``) and reconcile the rows
    that have them. The ``ds_conflicts`` view lists every conflicted document for the
    sweeper (``serve --reconcile-interval``) and ``data-service reconcile``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from . import documents, idempotency
from .documents import rev_key
from .couchdb import CouchDBError, Database, NotFound
from .design import CONFLICTS_NAME, VIEW
from .models import Models, ModelType
from .protection import UNSIGNED, IntegrityViolation, KeyUnavailable, Protector, canonical

log = logging.getLogger("data_service.reconcile")

PAGE = 100
READABLE_ENCRYPTED = ("encrypt", "encrypt-deterministic")
_ABSENT: Any = object()


def new_writer_id() -> str:
    """A random id for one sidecar process: its counter increments are kept under it."""
    return secrets.token_hex(6)


def _number(value: Any) -> Any:
    """An integral float as an int: JSON parsers in JavaScript (pouchdb-server, views)
    give ``2.0`` back as ``2``, and the signature covers the canonical text."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    return value


class Unresolvable(Exception):
    """A conflict the rules do not decide; the message says why (never a value)."""


# --- the write path: what merges need to know later --------------------------------


def stamp(model: ModelType, protector: Protector, current: dict | None, doc: dict, writer: str) -> dict:
    """``doc`` (about to be signed and written over ``current``, or created when None)
    with ``meta.changed`` and ``meta.counters`` brought up to date. Only ``merge`` types
    keep them; other types are returned as they are."""
    if model.conflict_policy != "merge":
        return doc
    meta = dict(doc["meta"])
    at = meta["updated_at"]
    new = documents.properties(doc)
    counters_declared = [name for name, prop in model.properties.items() if prop.merge == "counter"]
    if current is None:
        changed = {name: at for name in new}
        counters = {name: {"base": _number(new.get(name, 0))} for name in counters_declared}
    else:
        old = documents.properties(current)
        changed = {name: when for name in set(old) | set(_changed(current))
                   if (when := _time(current, name))}
        for name in set(old) | set(new):
            if not _same(model, protector, doc["_id"], name, old.get(name, _ABSENT), new.get(name, _ABSENT)):
                changed[name] = at
        counters = copy.deepcopy(_meta(current).get("counters") or {})
        for name in counters_declared:
            before, after = old.get(name, 0), new.get(name, 0)
            record = counters.setdefault(name, {"base": _number(before)})
            delta = after - before
            if delta:
                part = "inc" if delta > 0 else "dec"
                sums = record.setdefault(part, {})
                sums[writer] = _number(sums.get(writer, 0) + abs(delta))
    meta["changed"] = dict(sorted(changed.items()))
    if counters_declared:
        meta["counters"] = counters
    return {**doc, "meta": meta}


def _same(model: ModelType, protector: Protector, docid: str, name: str, old: Any, new: Any) -> bool:
    if old is _ABSENT or new is _ABSENT:
        return old is new
    if old == new:
        return True
    prop = model.properties.get(name)
    if prop is not None and prop.protection in READABLE_ENCRYPTED:
        try:  # randomized ciphertexts differ even for one value
            return protector.reveal(model, docid, name, old) == protector.reveal(model, docid, name, new)
        except (IntegrityViolation, KeyUnavailable):
            return False
    return False


# --- the merge (pure but for the keys) ---------------------------------------------


def _meta(doc: dict) -> dict:
    meta = doc.get("meta")
    return meta if isinstance(meta, dict) else {}


def _changed(doc: dict) -> dict:
    changed = _meta(doc).get("changed")
    return changed if isinstance(changed, dict) else {}


def _time(doc: dict, name: str) -> str:
    """When ``name`` last changed in ``doc`` ("" for never)."""
    meta = _meta(doc)
    if isinstance(meta.get("changed"), dict):
        return str(meta["changed"].get(name) or "")
    return str(meta.get("updated_at") or "") if name in doc else ""  # written before tracking


def _body(doc: dict) -> dict:
    """What a leaf says: everything but the revision fields and the signature."""
    return {k: v for k, v in doc.items() if k not in UNSIGNED}


def _latest(leaves: list[dict]) -> dict:
    return max(leaves, key=lambda d: (str(_meta(d).get("updated_at") or ""), rev_key(d["_rev"])))


def merge(model: ModelType, leaves: list[dict], protector: Protector) -> dict:
    """The merged document (``_id``, type, meta, properties; no ``_rev``, no signature)
    of verified, live ``leaves`` of ``model``. Raises Unresolvable."""
    leaves = sorted(leaves, key=lambda d: rev_key(d["_rev"]), reverse=True)
    _check_immutables(model, leaves, protector)
    latest = _latest(leaves)
    body = _merged(model, leaves, latest, protector) if model.conflict_policy == "merge" else _body(latest)
    for name, prop in model.properties.items():  # set once on one node: every leaf takes it
        holders = [leaf for leaf in leaves if name in leaf]
        if prop.immutable and name not in body and holders:
            body[name] = holders[0][name]
            if isinstance(_meta(body).get("changed"), dict) and _time(holders[0], name):
                body["meta"] = {**body["meta"], "changed": {**body["meta"]["changed"], name: _time(holders[0], name)}}
    return body


def _check_immutables(model: ModelType, leaves: list[dict], protector: Protector) -> None:
    for name, prop in model.properties.items():
        if not prop.immutable:
            continue
        seen: dict[bytes, list[str]] = {}
        for leaf in leaves:
            if name not in leaf:
                continue
            try:
                value = leaf[name] if prop.protection not in READABLE_ENCRYPTED else \
                    protector.reveal(model, leaf["_id"], name, leaf[name])
            except (IntegrityViolation, KeyUnavailable) as exc:
                raise Unresolvable(f"immutable property {name!r} of revision {leaf['_rev']} cannot be read: "
                                   f"{exc}") from None
            seen.setdefault(canonical(value), []).append(leaf["_rev"])
        if len(seen) > 1:
            groups = " vs ".join("+".join(revs) for revs in seen.values())
            raise Unresolvable(f"immutable property {name!r} differs between revisions {groups}")


def _merged(model: ModelType, leaves: list[dict], latest: dict, protector: Protector) -> dict:
    docid = latest["_id"]
    names = set()
    for leaf in leaves:
        names |= set(documents.properties(leaf)) | set(_changed(leaf))
    props: dict[str, Any] = {}
    changed: dict[str, str] = {}
    counters: dict[str, dict] = {}
    for name in sorted(names):
        prop = model.properties.get(name)
        ranked = sorted(leaves, key=lambda leaf: (_time(leaf, name), rev_key(leaf["_rev"])), reverse=True)
        top = ranked[0]
        if _time(top, name):
            changed[name] = _time(top, name)
        kind = prop.merge if prop is not None else None
        if kind == "set":
            holders = [leaf for leaf in ranked if name in leaf]
            if holders:
                props[name] = _union(model, protector, docid, name, holders)
        elif kind == "counter":
            counters[name], value = _counter(leaves, name)
            if name in top:
                props[name] = value
                if value != top[name]:
                    _check_value(model, name, value)
        elif name in top:
            props[name] = top[name]
    for name, prop in model.properties.items():  # counters never set still keep their record
        if prop.merge == "counter" and name not in counters and any(
                name in (_meta(leaf).get("counters") or {}) for leaf in leaves):
            counters[name], _ = _counter(leaves, name)
    meta = dict(_meta(latest))
    created = [str(_meta(leaf)["created_at"]) for leaf in leaves if _meta(leaf).get("created_at")]
    if created:
        meta["created_at"] = min(created)
    meta["changed"] = changed
    if counters:
        meta["counters"] = counters
    else:
        meta.pop("counters", None)
    return {"_id": docid, "type": latest["type"], "meta": dict(sorted(meta.items())), **props}


def _check_value(model: ModelType, name: str, value: Any) -> None:
    if name in model.properties:
        violations = model.check_value(name, value)
        if violations:
            raise Unresolvable(f"the merged value of {name!r} breaks its schema: "
                               + "; ".join(v.message for v in violations))


def _union(model: ModelType, protector: Protector, docid: str, name: str, holders: list[dict]) -> Any:
    prop = model.properties[name]

    def clear(leaf: dict) -> list:
        try:
            value = leaf[name] if prop.protection == "plain" else protector.reveal(model, docid, name, leaf[name])
        except (IntegrityViolation, KeyUnavailable) as exc:
            raise Unresolvable(f"set {name!r} of revision {leaf['_rev']} cannot be read: {exc}") from None
        if not isinstance(value, list):
            raise Unresolvable(f"set {name!r} of revision {leaf['_rev']} is not an array")
        return value

    seen: set[bytes] = set()
    union: list = []
    for leaf in holders:
        for item in clear(leaf):
            key = canonical(item)
            if key not in seen:
                seen.add(key)
                union.append(item)
    if union == clear(holders[0]):
        return holders[0][name]  # the stored form as it is (no new ciphertext)
    _check_value(model, name, union)
    return union if prop.protection == "plain" else protector.protect(model, docid, name, union)


def _counter(leaves: list[dict], name: str) -> tuple[dict, Any]:
    """The merged ``meta.counters`` record of ``name`` and the value it gives."""
    bases: list = []
    sums: dict[str, dict[str, Any]] = {"inc": {}, "dec": {}}
    for leaf in leaves:
        record = (_meta(leaf).get("counters") or {}).get(name)
        if not isinstance(record, dict):  # written before the type kept counters
            record = {"base": leaf.get(name, 0)}
        bases.append(record.get("base", 0))
        for part, merged in sums.items():
            for writer, total in (record.get(part) or {}).items():
                merged[writer] = max(merged.get(writer, total), total)
    if any(base != bases[0] for base in bases):
        raise Unresolvable(f"counter {name!r}: the revisions disagree on its base value")
    value = _number(bases[0] + sum(sums["inc"][w] for w in sorted(sums["inc"]))
                    - sum(sums["dec"][w] for w in sorted(sums["dec"])))
    record = {"base": bases[0]}
    for part in ("inc", "dec"):
        if sums[part]:
            record[part] = dict(sorted(sums[part].items()))
    return record, value


# --- the reconciler ----------------------------------------------------------------


@dataclass
class Outcome:
    """What became of one conflicted document.

    ``status``: ``resolved`` (merged and losers deleted), ``unresolvable`` (left as it
    is; ``reason`` says why), ``clean`` (no conflict any more when looked at again),
    ``gone`` (deleted meanwhile) or ``busy`` (kept changing; the next pass retries)."""

    docid: str
    status: str
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


@dataclass
class SweepReport:
    conflicted: int = 0
    resolved: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def unresolvable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "unresolvable"]

    @property
    def busy(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "busy"]

    @property
    def discarded(self) -> list[tuple[str, str, str]]:
        return [(o.docid, rev, why) for o in self.outcomes for rev, why in o.discarded]

    @property
    def complete(self) -> bool:
        return not self.unresolvable and not self.busy


AfterWinnerWrite = Callable[[list[str]], Awaitable[Any]]


class Reconciler:
    """Reconciles conflicted documents of one database. ``stats`` is the store's
    ``Stats`` (conflicts_found/resolved/unresolvable, conflict_leaves_discarded,
    integrity_violations). ``after_winner_write`` runs between writing the merged
    winners and deleting the losers (a test seam: raise there to simulate a crash)."""

    def __init__(self, db: Database, protector: Protector, stats: Any, *, attempts: int = 5,
                 after_winner_write: AfterWinnerWrite | None = None, remember: int = 1024) -> None:
        self.db = db
        self.protector = protector
        self.stats = stats
        self.attempts = attempts
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
        if outcome.status == "gone":
            return None
        if outcome.status == "unresolvable":
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
        for attempt in range(self.attempts):
            plans = await self._plans([(models[doc["_id"]], doc) for doc in pending])
            writes = [plan for plan in plans if plan.write is not None and not plan.retry]
            if writes:
                results = await self.db.bulk_docs([plan.write for plan in writes])
                for plan, result in zip(writes, results):
                    if result.get("error") == "conflict":
                        plan.retry = True
                    elif result.get("error"):
                        plan.outcome = Outcome(plan.docid, "unresolvable", f"CouchDB refused the merged document: "
                                               f"{result.get('error')}: {result.get('reason')}",
                                               plan.outcome.discarded, plan.winner)
                        plan.losers = []
                    else:
                        plan.outcome.doc = {**plan.write, "_rev": result["rev"]}
            written = [p.docid for p in writes if not p.retry and p.outcome.status == "resolved"]
            if written and self.after_winner_write is not None:
                await self.after_winner_write(written)
            deletes = [{"_id": plan.docid, "_rev": rev, "_deleted": True}
                       for plan in plans if not plan.retry and plan.outcome.status == "resolved" for rev in plan.losers]
            if deletes:  # a loser someone else deleted or extended answers 409: fine either way
                for result in await self.db.bulk_docs(deletes):
                    if result.get("error") not in (None, "conflict", "not_found"):
                        log.warning("conflict: document %s: losing revision not deleted (%s: %s); the next "
                                    "pass retries", result.get("id"), result.get("error"), result.get("reason"))
            retry = []
            for plan in plans:
                if plan.retry:
                    retry.append(plan.docid)
                else:
                    final[plan.docid] = plan.outcome
            if not retry:
                break
            pending = []
            for docid, doc in (await self._current(retry)).items():
                if doc is None:
                    final[docid] = Outcome(docid, "gone")
                elif not doc.get("_conflicts"):
                    final[docid] = Outcome(docid, "clean", doc=doc)
                else:
                    pending.append(doc)
            if not pending:
                break
            await asyncio.sleep(0.01 * (attempt + 1))
        else:
            for doc in pending:
                final[doc["_id"]] = Outcome(doc["_id"], "busy", "kept changing while being reconciled", doc=doc)
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
        if outcome.status == "resolved":
            self.stats.conflicts_resolved += 1
        elif outcome.status == "unresolvable":
            self.stats.conflicts_unresolvable += 1
            log.warning("conflict: document %s cannot be reconciled: %s", outcome.docid, outcome.reason)

    async def _current(self, docids: list[str]) -> dict[str, dict | None]:
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
            plan = _Plan(docid, strip(winner), Outcome(docid, "resolved"), retry=missing)
            if not missing:
                self._plan(plan, model, leaves)
            plans.append(plan)
        return plans

    def _plan(self, plan: _Plan, model: ModelType | None, leaves: list[dict]) -> None:
        """Verify, merge and decide what to write and delete (no I/O)."""
        outcome = plan.outcome
        outcome.doc = plan.winner

        def unresolvable(reason: str) -> None:
            outcome.status, outcome.reason = "unresolvable", reason

        if model is None and idempotency.is_record(plan.winner):  # two claims of one key on two nodes:
            plan.losers = [leaf["_rev"] for leaf in leaves if leaf["_rev"] != plan.winner["_rev"]]  # keep one
            return None
        if model is None:
            return unresolvable(f"type {plan.winner.get('type')!r} is not in the models file")
        valid = []
        for leaf in leaves:
            try:
                self.protector.verify(leaf)
            except IntegrityViolation as exc:
                outcome.discarded.append((leaf["_rev"], exc.reason))
                continue
            except KeyUnavailable as exc:
                return unresolvable(f"revision {leaf['_rev']} cannot be verified: {exc}")
            if not documents.is_of(model, leaf):
                return unresolvable(f"revision {leaf['_rev']} is a {leaf.get('type')!r}, "
                                    f"not a {model.name} v{model.major}")
            valid.append(leaf)
        if not valid:
            return unresolvable("no revision passes its signature check")
        try:
            merged = merge(model, valid, self.protector)
        except Unresolvable as exc:
            return unresolvable(str(exc))
        base = max(valid, key=lambda leaf: rev_key(leaf["_rev"]))
        plan.losers = [leaf["_rev"] for leaf in leaves if leaf["_rev"] != base["_rev"]]
        if merged == _body(base):
            outcome.doc = base
        else:
            plan.write = self.protector.sign({**merged, "_rev": base["_rev"]})

    # -- the sweeper --------------------------------------------------------------

    async def sweep(self, models: Models, progress: Any = None, page: int = PAGE) -> SweepReport:
        """One pass over the ``ds_conflicts`` view, ``page`` documents at a time.
        ``progress`` (``maintenance.Progress``) advances per document."""
        report = SweepReport()
        start = None
        while True:
            options: dict[str, Any] = {"include_docs": True, "conflicts": True, "limit": page + (1 if start else 0)}
            if start is not None:
                options["startkey"] = start
            rows = (await self.db.view(CONFLICTS_NAME, VIEW, **options)).rows
            if start is not None and rows and rows[0]["key"] == start:
                rows = rows[1:]
            if not rows:
                break
            start = rows[-1]["key"]
            items = []
            for row in rows:
                doc = row.get("doc")
                if doc is None:
                    report.outcomes.append(Outcome(row["id"], "gone"))
                elif not doc.get("_conflicts"):
                    report.outcomes.append(Outcome(row["id"], "clean", doc=doc))
                else:
                    items.append((documents.model_of(models, doc), doc))
            outcomes = await self.reconcile(items) if items else []
            report.outcomes += outcomes
            report.conflicted += len(items)
            report.resolved += sum(1 for o in outcomes if o.status == "resolved")
            if progress is not None:
                progress.advance(len(rows))
        if progress is not None:
            progress.finish()
        return report

    async def conflicted_count(self) -> int:
        """How many documents the ``ds_conflicts`` view lists now."""
        result = await self.db.view(CONFLICTS_NAME, VIEW, limit=0)
        return result.total_rows or 0


def strip(doc: dict) -> dict:
    """``doc`` without the fields a read adds (``_conflicts``, ``_revisions``...)."""
    return {k: v for k, v in doc.items() if k not in ("_conflicts", "_deleted_conflicts", "_revisions")}


async def run_sweeper(reconciler: Reconciler, models: Models, interval: float) -> None:
    """The background task of ``serve``: a sweep every ``interval`` seconds, until cancelled."""
    missing = False
    while True:
        await asyncio.sleep(interval)
        try:
            report = await reconciler.sweep(models)
        except NotFound:
            if not missing:  # once, not every interval
                log.warning("reconcile: no _design/%s view (or no database); run data-service install",
                            CONFLICTS_NAME)
            missing = True
            continue
        except CouchDBError as exc:
            log.warning("reconcile: sweep failed: %s", exc)
            continue
        except Exception:
            log.exception("reconcile: sweep failed")
            continue
        missing = False
        if report.conflicted:
            log.info("reconcile: %d conflicted, %d resolved, %d unresolvable, %d busy", report.conflicted,
                     report.resolved, len(report.unresolvable), len(report.busy))
