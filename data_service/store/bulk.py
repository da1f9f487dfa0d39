"""Bulk writes: many creates / replaces / patches / deletes of one type in one request.

Each item is checked, protected and signed exactly like a single write (by the
lifecycle); the documents are read in one ``_all_docs`` and written in one
``_bulk_docs`` round trip; a bad item never blocks the good ones, and every item gets
its own result, in request order. Items with an ``Idempotency-Key`` claim it first
(one more ``_bulk_docs``), so a replayed bulk request creates nothing twice. An item
CouchDB refuses with a conflict is answered as stale (412) when it named a revision;
an unconditioned patch is read again and re-applied (bounded, like a single PATCH).
Writes to one document in one request are refused (422): their order would be
CouchDB's, not the caller's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .. import envelope, etags, idempotency
from ..couchdb import Conflict, CouchDBError
from ..errors import ServiceError
from ..models import DeletePolicy, ModelType, ValidationFailed, Violation
from ..protection import IntegrityViolation, KeyUnavailable
from ..retry import attempts
from .errors import DocumentNotFound, IdempotencyKeyConsumed, IdempotencyMismatch, RetriesExhausted, StaleRevision
from .results import Shown

if TYPE_CHECKING:
    from .documents import DocumentStore


class Op(StrEnum):
    CREATE = "create"
    REPLACE = "replace"
    PATCH = "patch"
    DELETE = "delete"


class PreconditionRequired(ServiceError):
    code = "precondition_required"


@dataclass(frozen=True)
class Deleted:
    id: str
    below_quorum: bool = False


Result = Shown | Deleted | Exception


@dataclass
class Item:
    op: Op
    docid: str | None
    values: Any  # the body (create, replace) or merge patch (patch)
    if_match: frozenset[str] | None
    key: str | None
    hashed: dict = field(default_factory=dict)
    current: dict | None = None
    result: Result | None = None


def parse(raw: Any) -> Item | Exception:
    """One item of ``{"items": [...]}``; a ValidationFailed when it is malformed."""
    if not isinstance(raw, dict) or raw.get("op") not in tuple(Op):
        return ValidationFailed([Violation("/op", f"one of {', '.join(Op)}")])
    op, docid = Op(raw["op"]), raw.get("id")
    wanted = {
        Op.CREATE: {"op", "body", "idempotency_key"},
        Op.REPLACE: {"op", "id", "if_match", "body"},
        Op.PATCH: {"op", "id", "if_match", "patch"},
        Op.DELETE: {"op", "id", "if_match"},
    }[op]
    wrong = [Violation(f"/{name}", "not allowed here") for name in raw if name not in wanted]
    if op is not Op.CREATE and not (isinstance(docid, str) and envelope.valid_id(docid)):
        wrong.append(Violation("/id", "a document id"))
    key = raw.get("idempotency_key")
    if key is not None and not (isinstance(key, str) and 1 <= len(key) <= 200 and key.isascii() and key.isprintable()):
        wrong.append(Violation("/idempotency_key", "1-200 visible ASCII characters"))
    try:
        if_match = etags.if_match(raw["if_match"]) if isinstance(raw.get("if_match"), str) else None
    except etags.MalformedCondition:
        if_match = None
        wrong.append(Violation("/if_match", '"*" or a list of entity tags ("<rev>")'))
    if wrong:
        return ValidationFailed(wrong)
    return Item(op, docid, raw.get("patch") if op is Op.PATCH else raw.get("body"), if_match, key)


async def bulk(store: DocumentStore, model: ModelType, raw_items: list) -> list[Result]:
    """The result of every item, in order."""
    items: list[Item | Exception] = [parse(raw) for raw in raw_items]
    live = [i for i in items if isinstance(i, Item)]
    seen: set[str] = set()
    for item in live:
        try:
            _check(store, model, item, seen)
            item.hashed = dict(await store.hash_values(model, item.docid or "", item.values or {}))
        except ServiceError as exc:
            item.result = exc
    await _claim_keys(store, model, [i for i in live if i.result is None and i.key])
    for item in live:
        if item.op is Op.CREATE and item.docid is None:
            item.docid = await store.ids.take()
    await _write(store, model, [i for i in live if i.result is None])
    return [i if isinstance(i, Exception) else (i.result or RetriesExhausted(i.docid)) for i in items]


def _check(store: DocumentStore, model: ModelType, item: Item, seen: set[str]) -> None:
    if item.docid is not None:
        if item.docid in seen:
            raise ValidationFailed([Violation("/id", "written twice in one request")])
        seen.add(item.docid)
    if item.op is Op.CREATE:
        store.lifecycle.check_body(model, item.values)
    elif item.op is Op.REPLACE:
        store.lifecycle.check_replacement(model, item.values)
    elif item.op is Op.PATCH:
        store.lifecycle.check_patch(model, item.values)
    if item.op in (Op.REPLACE, Op.DELETE) and item.if_match is None:
        raise PreconditionRequired()


async def _claim_keys(store: DocumentStore, model: ModelType, keyed: list[Item]) -> None:
    """Claim the items' Idempotency-Keys (one read, one write); a key claimed before
    turns its item into a replay of the document it names."""
    if not keyed:
        return
    ids = [idempotency.record_id(model.name, item.key or "") for item in keyed]
    rows = (await store.db.all_docs(keys=ids, include_docs=True)).rows
    now = dt.datetime.now(dt.UTC)
    claims: list[tuple[Item, dict]] = []
    for item, row in zip(keyed, rows, strict=True):
        record = row.get("doc")
        if record is not None and not idempotency.expired(record, now):
            await _replay(store, model, item, record)
            continue
        item.docid = await store.ids.take()
        value = row.get("value")  # a record the sweep deleted: the claim continues its tombstone
        tombstone = value["rev"] if isinstance(value, dict) and value.get("deleted") else None
        claim = store.lifecycle.claim(
            model, item.key or "", item.docid, item.values, now, store.claims.ttl, record, tombstone
        )
        claims.append((item, claim))
    if claims:
        results = await store.db.bulk_docs([claim for _, claim in claims])
        for (item, _), result in zip(claims, results, strict=True):
            if result.get("error"):  # claimed meanwhile by another request: replay it
                item.result = await _single(store.create(model, item.values, item.key))


async def _replay(store: DocumentStore, model: ModelType, item: Item, record: dict) -> None:
    try:
        store.verify(record)
    except IntegrityViolation as exc:
        item.result = exc
        return
    if record["body"] != idempotency.body_digest(item.values):
        item.result = IdempotencyMismatch(item.key)
    else:
        item.result = await _single(store.create(model, item.values, item.key))


async def _single(call: Any) -> Result:
    try:
        return await call
    except (ServiceError, IdempotencyKeyConsumed) as exc:
        return exc


async def _write(store: DocumentStore, model: ModelType, items: list[Item]) -> None:
    """Read what the updates change (one ``_all_docs``), make every document, write them
    in one ``_bulk_docs``; conflicted unconditioned patches go round again."""
    async for _ in attempts(store.retry, store.sleep):
        await _read_current(store, model, [i for i in items if i.op is not Op.CREATE])
        docs: list[tuple[Item, dict]] = []
        for item in items:
            if item.result is None:
                try:
                    docs.append((item, _next(store, model, item)))
                except (ServiceError, Conflict) as exc:
                    item.result = exc
        if not docs:
            return
        retry: list[Item] = []
        stale: list[Item] = []
        for (item, doc), result in zip(docs, await store.db.bulk_docs([doc for _, doc in docs]), strict=True):
            if result.get("error") == "conflict":
                store.stats.write_conflicts += 1
                (retry if item.op is Op.PATCH and item.if_match is None else stale).append(item)
            elif result.get("error"):
                item.result = CouchDBError("POST", "_bulk_docs", None, result.get("error"), result.get("reason"))
            elif doc.get("_deleted"):
                item.result = Deleted(doc["_id"])
            else:
                item.result = store.shown(model, {**doc, "_rev": result["rev"]}, created=item.op is Op.CREATE)
        await _stale(store, model, stale)
        if not retry:
            return
        store.stats.patch_retries += len(retry)
        items = retry


async def _read_current(store: DocumentStore, model: ModelType, items: list[Item]) -> None:
    rows = (await store.db.all_docs(keys=[i.docid for i in items], include_docs=True, conflicts=True)).rows
    for item, row in zip(items, rows, strict=True):
        item.current = None
        try:
            doc = envelope.row_doc(row)
            if doc is not None and doc.get("_conflicts"):  # rare: the single-document path reconciles
                item.current = await store.read(model, item.docid or "")
                continue
            if doc is None:
                raise DocumentNotFound(item.docid)
            store.verify(doc)  # first: a changed type or deleted marker is a violation, not a 404
            current = store.lifecycle.current(model, doc)  # an older version: upgraded
            if current is None or envelope.is_deleted(current):
                raise DocumentNotFound(item.docid)
            item.current = current
        except (ServiceError, KeyUnavailable) as exc:
            item.result = exc


def _next(store: DocumentStore, model: ModelType, item: Item) -> dict:
    """The next stored document of ``item`` (its revision checked)."""
    at, current, lifecycle = envelope.now(), item.current, store.lifecycle
    if item.op is Op.CREATE:
        return lifecycle.create(model, item.docid or "", item.values, item.hashed, at)
    assert current is not None
    if item.if_match is not None:
        store.check_revision(model, current, item.if_match)
    if item.op is Op.REPLACE:
        return lifecycle.replace(model, current, item.values, item.hashed, at)
    if item.op is Op.PATCH:
        return lifecycle.patch(model, current, item.values, item.hashed, at)
    if model.delete_policy is DeletePolicy.SOFT:
        return lifecycle.soft_delete(model, current, at)
    return {"_id": current["_id"], "_rev": current["_rev"], "_deleted": True}


async def _stale(store: DocumentStore, model: ModelType, items: list[Item]) -> None:
    """412s carry the current representation (one more read)."""
    if items:
        store.stats.stale_revisions += len(items)
        await _read_current(store, model, items)
        for item in items:
            if item.current is not None:
                item.result = StaleRevision(item.current["_rev"], store.lifecycle.representation(model, item.current))
