"""Whole-database jobs: tamper scan (``verify``), re-protection after key rotation
(``reencrypt``) and upgrading documents of older type versions (``migrate``). All
page through ``_all_docs`` and show progress; the writing ones are resumable (what is
done already is skipped) and safe beside live traffic (revisions; a document changed
meanwhile is read again and redone)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import idempotency
from .couchdb import Database
from .envelope import row_doc, tag_of
from .lifecycle import Lifecycle
from .models import MigrationFailed, Models, is_older, model_of
from .protection import IntegrityViolation, KeyUnavailable
from .retry import RetryPolicy, attempts
from .revisions import Leaves
from .store.reads import Reads

PAGE = 500


class Progress:
    """``label: done/total`` on stderr: rewritten in place on a terminal, else a line
    every few seconds and at the end."""

    def __init__(self, label: str, total: int, out: TextIO = sys.stderr, every: float = 2.0) -> None:
        self.label, self.total, self.out, self.every = label, max(total, 0), out, every
        self.done = 0
        self._last = 0.0
        self._tty = out.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._tty or now - self._last >= self.every:
            self._last = now
            self._show(end="\r" if self._tty else "\n")

    def finish(self) -> None:
        self._show(end="\n")

    def _show(self, end: str) -> None:
        percent = f" ({100 * self.done // self.total}%)" if self.total else ""
        self.out.write(f"{self.label}: {self.done}/{self.total} documents{percent}{end}")
        self.out.flush()


async def documents(db: Database, size: int = PAGE) -> AsyncIterator[list[dict]]:
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


async def verify_database(db: Database, lifecycle: Lifecycle, progress: Progress) -> VerifyReport:
    """Every document's signature, then every document with a deleted leaf above its
    live winner: each such leaf must be a tombstone the service signed for its place
    (``Lifecycle.removed``), or the document was rolled back."""
    report = VerifyReport()
    async for page in documents(db):
        for doc in page:
            report.checked += 1
            try:
                lifecycle.verify(doc)
            except IntegrityViolation as exc:
                report.failures.append((exc.docid, exc.reason))
            except KeyUnavailable as exc:
                report.failures.append((doc["_id"], str(exc)))
        progress.advance(len(page))
    progress.finish()
    failed = {docid for docid, _ in report.failures}
    async for docid, leaves in suspects(db):
        for leaf in leaves.above():
            try:
                lifecycle.removed(leaf)
            except IntegrityViolation as exc:
                if docid not in failed:
                    failed.add(docid)
                    report.failures.append((docid, f"rolled back: {exc.reason}"))
            except KeyUnavailable as exc:
                report.failures.append((docid, str(exc)))
    return report


async def suspects(db: Database, size: int = 100) -> AsyncIterator[tuple[str, Leaves]]:
    """Documents with a deleted leaf above their live winner, with every leaf: a page of
    ids at a time, the change feed's leaf revisions of those ids (``_doc_ids``, at most
    100: CouchDB looks them up by id) naming the ones with more than one leaf."""
    reads = Reads(db)
    async for rows in db.pages(None, None, size=size):
        ids = list(await reads.above([row["id"] for row in rows if not row["id"].startswith("_design/")]))
        for docid, leaves in (await reads.leaves(ids)).items() if ids else ():
            if leaves.above():
                yield docid, leaves


@dataclass
class ReencryptReport:
    checked: int = 0
    rewritten: int = 0
    current: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, why)
    stale_lookup_hashes: int = 0  # sha3-512 values under an old key: need the plaintext to re-hash


async def reencrypt_database(
    db: Database,
    lifecycle: Lifecycle,
    models: Models,
    progress: Progress,
    retry: RetryPolicy = RetryPolicy(attempts=5, base=0.01, cap=0.25),
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> ReencryptReport:
    """Re-protect every document under the primary keys and re-sign it (version 2,
    for the generation the write creates), page by page with revs. Documents that fail
    verification are skipped and reported, never re-signed. Safe beside live traffic:
    a document changed meanwhile (409) is re-read and redone; re-running skips what is
    already current, so an interrupted run resumes."""
    report = ReencryptReport()
    async for page in documents(db):
        report.checked += len(page)
        todo = page
        async for _ in attempts(retry, sleep):
            writes: list[dict] = []
            for doc in todo:
                try:
                    lifecycle.verify(doc)  # first: a poisoned document is skipped and named, whatever it holds
                    model = model_of(models, doc)
                    if model is None and not idempotency.is_record(doc):
                        report.skipped.append((doc["_id"], f"type {doc.get('type')!r} not in the models file"))
                        continue
                    if model is not None and is_older(model, doc):
                        report.skipped.append((doc["_id"], f"an older version ({doc['type']}): run migrate first"))
                        continue
                    new, stale = lifecycle.reprotected(model, doc) if model else (lifecycle.resigned(doc), 0)
                except (IntegrityViolation, KeyUnavailable) as exc:
                    report.skipped.append((doc["_id"], str(exc)))
                    continue
                report.stale_lookup_hashes += stale
                if new is None:
                    report.current += 1
                else:
                    writes.append(new)
            if not writes:
                break
            written, todo = await _write(db, writes)
            report.rewritten += written
        else:
            report.skipped += [(doc["_id"], "kept changing; run again") for doc in todo]
        progress.advance(len(page))
    progress.finish()
    return report


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
) -> MigrateReport:
    """Rewrite every document of an older major version of a declared type as its
    current version (``Lifecycle.migrated``: verified first, upgraded, signed for the
    generation the rewrite creates), ``batch`` documents per round trip. Documents that
    fail verification or their migration, or of a version no migration starts from, are
    skipped and reported; documents of other types or newer versions are left alone."""
    report = MigrateReport()
    async for page in documents(db, batch):
        report.checked += len(page)
        todo = page
        async for _ in attempts(retry, sleep):
            writes: list[dict] = []
            for doc in todo:
                tag = tag_of(doc)
                model = models.get(tag[0]) if tag else None
                if tag is None or model is None or tag[1] > model.major:
                    continue
                if tag[1] == model.major:
                    report.current += 1
                    continue
                try:
                    lifecycle.verify(doc)  # first: a poisoned document is skipped and named, whatever it holds
                    if not model.migrates_from(tag[1]):
                        report.skipped.append((doc["_id"], f"no migration from {model.name} version {tag[1]}"))
                        continue
                    writes.append(lifecycle.migrated(model, doc))
                except (IntegrityViolation, KeyUnavailable, MigrationFailed) as exc:
                    report.skipped.append((doc["_id"], str(exc)))
            if not writes:
                break
            written, todo = await _write(db, writes)
            report.migrated += written
        else:
            report.skipped += [(doc["_id"], "kept changing; run again") for doc in todo]
        progress.advance(len(page))
    progress.finish()
    return report
