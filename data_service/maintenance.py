"""Whole-database jobs: tamper scan (``verify``), re-protection after key rotation
(``reencrypt``) and upgrading documents of older type versions (``migrate``). All
page through ``_all_docs`` and show progress; the writing ones are resumable (what is
done already is skipped) and safe beside live traffic (revisions; a document changed
meanwhile is read again and redone)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from . import idempotency
from .couchdb import Database
from .envelope import row_doc, tag_of
from .lifecycle import Lifecycle
from .models import MigrationFailed, Models, is_older, model_of
from .pipeline import pipelined
from .progress import Progress
from .protection import IntegrityViolation, KeyUnavailable
from .retry import RetryPolicy, attempts
from .revisions import Leaves
from .store.reads import Reads

PAGE = 500
# Pages a job works on at once (reencrypt, migrate: each written in one _bulk_docs). One
# process against the sidecar's workers: 4 reached ~80% of the bulk fill rate, 8 ~90%.
DEPTH = 8
ABOVE = 100  # ids per change-feed lookup of deleted leaves (CouchDB then looks them up by id)


async def documents(db: Database, size: int = PAGE) -> AsyncGenerator[list[dict], None]:
    """Every document but design docs, in id order, ``size`` at a time (one the client
    cannot parse as ``envelope.unreadable``: it fails verification)."""
    async for rows in db.pages(None, None, size=size, include_docs=True):
        yield [doc for row in rows if not row["id"].startswith("_design/") and (doc := row_doc(row))]


async def document_count(db: Database) -> int:
    """How many documents ``documents`` walks: the database's count without its
    design documents (the total of a job's progress)."""
    designs = await db.all_docs(startkey="_design/", endkey="_design0")
    return (await db.info())["doc_count"] - len(designs.rows)


@dataclass
class VerifyReport:
    checked: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)


async def verify_database(db: Database, lifecycle: Lifecycle, progress: Progress, depth: int = DEPTH) -> VerifyReport:
    """Every document's signature, and every document with a deleted leaf above its
    live winner: each such leaf must be a tombstone the service signed for its place
    (``Lifecycle.removed``), or the document was rolled back. ``depth`` pages at once,
    the next one read meanwhile; failures are listed in id order."""
    report = VerifyReport()
    reads = Reads(db)

    async def check(page: list[dict]) -> None:
        ids = [doc["_id"] for doc in page]
        lookups = asyncio.gather(*(reads.above(ids[i : i + ABOVE]) for i in range(0, len(ids), ABOVE)))
        failed = set()
        for doc in page:
            try:
                lifecycle.check_signature(doc)
            except IntegrityViolation as exc:
                report.failures.append((exc.docid, exc.reason))
                failed.add(doc["_id"])
            except KeyUnavailable as exc:
                report.failures.append((doc["_id"], str(exc)))
                failed.add(doc["_id"])
        suspects = set().union(*await lookups)
        for docid, leaves in (await reads.leaves(sorted(suspects))).items() if suspects else ():
            _check_removed(lifecycle, docid, leaves, report, rolled_back=docid in failed)
        report.checked += len(page)
        progress.advance(len(page))

    await pipelined(documents(db), check, depth)
    progress.finish()
    report.failures.sort(key=lambda failure: failure[0])
    return report


def _check_removed(lifecycle: Lifecycle, docid: str, leaves: Leaves, report: VerifyReport, rolled_back: bool) -> None:
    """Each deleted leaf above the winner must be a tombstone the service signed for its
    place; the first that is not names the document as rolled back (unless its signature
    check failed already: ``rolled_back``)."""
    for leaf in leaves.above():
        try:
            lifecycle.removed(leaf)
        except IntegrityViolation as exc:
            if not rolled_back:
                rolled_back = True
                report.failures.append((docid, f"rolled back: {exc.reason}"))
        except KeyUnavailable as exc:
            report.failures.append((docid, str(exc)))


@dataclass
class ReencryptReport:
    checked: int = 0
    rewritten: int = 0
    current: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, why)
    stale_lookup_hashes: int = 0  # sha3-512 values under an old key: need the plaintext to re-hash


Rewrite = Callable[[dict], dict | None]  # a document → what to write over it (None: nothing)


async def reencrypt_database(
    db: Database,
    lifecycle: Lifecycle,
    models: Models,
    progress: Progress,
    batch: int = PAGE,
    retry: RetryPolicy = RetryPolicy(attempts=5, base=0.01, cap=0.25),
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    depth: int = DEPTH,
) -> ReencryptReport:
    """Re-protect every document under the primary keys and re-sign it (version 2,
    for the generation the write creates), ``batch`` documents per round trip with their
    revs, ``depth`` batches written at once while the next is read. Documents that fail verification are
    skipped and reported, never re-signed. Safe beside live traffic: a document changed
    meanwhile (409) is re-read and redone; re-running skips what is already current, so
    an interrupted run resumes."""
    report = ReencryptReport()

    def rewrite(doc: dict) -> dict | None:
        try:
            lifecycle.check_signature(doc)  # first: a poisoned document is skipped and named, whatever it holds
            model = model_of(models, doc)
            if model is None and not idempotency.is_record(doc):
                report.skipped.append((doc["_id"], f"type {doc.get('type')!r} not in the models file"))
                return None
            if model is not None and is_older(model, doc):
                report.skipped.append((doc["_id"], f"an older version ({doc['type']}): run migrate first"))
                return None
            new, stale = lifecycle.reprotected(model, doc) if model else (lifecycle.resigned(doc), 0)
        except (IntegrityViolation, KeyUnavailable) as exc:
            report.skipped.append((doc["_id"], str(exc)))
            return None
        report.stale_lookup_hashes += stale
        if new is None:
            report.current += 1
        return new

    async def page_done(page: list[dict]) -> None:
        report.checked += len(page)
        written, changing = await _rewrite_page(db, page, rewrite, retry, sleep)
        report.rewritten += written
        report.skipped += [(doc["_id"], "kept changing; run again") for doc in changing]
        progress.advance(len(page))

    await pipelined(documents(db, batch), page_done, depth)
    progress.finish()
    return report


async def _rewrite_page(
    db: Database,
    page: list[dict],
    rewrite: Rewrite,
    retry: RetryPolicy,
    sleep: Callable[[float], Awaitable[Any]],
) -> tuple[int, list[dict]]:
    """Write ``rewrite`` of each document of ``page`` over the revision it was read at;
    those that changed meanwhile are read again and redone, up to ``retry``'s attempts.
    Returns how many were written and the ones still changing."""
    written, todo = 0, page
    async for _ in attempts(retry, sleep):
        writes = [new for doc in todo if (new := rewrite(doc)) is not None]
        if not writes:
            return written, []
        done, todo = await _write(db, writes)
        written += done
    return written, todo


async def _write(db: Database, docs: list[dict]) -> tuple[int, list[dict]]:
    """Write ``docs`` (each over its ``_rev``, asking every copy): how many were
    written, and the ones that changed meanwhile, read again."""
    saved = await db.save(docs)
    conflicted = [s.id for s in saved if s.error == "conflict"]
    again = (await db.all_docs(keys=conflicted, include_docs=True)).rows if conflicted else []
    return sum(1 for s in saved if s.rev), [row["doc"] for row in again if row.get("doc")]


@dataclass
class MigrateReport:
    checked: int = 0
    migrated: int = 0
    current: int = 0  # documents of declared types at their version already
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, why)


async def migrate_database(
    db: Database,
    lifecycle: Lifecycle,
    models: Models,
    progress: Progress,
    batch: int = PAGE,
    retry: RetryPolicy = RetryPolicy(attempts=5, base=0.01, cap=0.25),
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    depth: int = DEPTH,
) -> MigrateReport:
    """Rewrite every document of an older major version of a declared type as its
    current version (``Lifecycle.migrated``: verified first, upgraded, signed for the
    generation the rewrite creates), ``batch`` documents per round trip, ``depth``
    batches written at once while the next is read. Documents that fail verification or
    their migration, or of a version no migration starts from, are skipped and
    reported; documents of other types or newer versions are left alone."""
    report = MigrateReport()

    def rewrite(doc: dict) -> dict | None:
        tag = tag_of(doc)
        model = models.get(tag[0]) if tag else None
        if tag is None or model is None or tag[1] > model.major:
            return None
        if tag[1] == model.major:
            report.current += 1
            return None
        try:
            lifecycle.check_signature(doc)  # first: a poisoned document is skipped and named, whatever it holds
            if not model.migrates_from(tag[1]):
                report.skipped.append((doc["_id"], f"no migration from {model.name} version {tag[1]}"))
                return None
            return lifecycle.migrated(model, doc)
        except (IntegrityViolation, KeyUnavailable, MigrationFailed) as exc:
            report.skipped.append((doc["_id"], str(exc)))
            return None

    async def page_done(page: list[dict]) -> None:
        report.checked += len(page)
        written, changing = await _rewrite_page(db, page, rewrite, retry, sleep)
        report.migrated += written
        report.skipped += [(doc["_id"], "kept changing; run again") for doc in changing]
        progress.advance(len(page))

    await pipelined(documents(db, batch), page_done, depth)
    progress.finish()
    return report
