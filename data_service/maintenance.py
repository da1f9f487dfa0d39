"""Whole-database jobs: tamper scan (``verify``) and re-protection after key
rotation (``reencrypt``). Both page through ``_all_docs`` and show progress."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import idempotency
from .couchdb import Database
from .envelope import model_of, row_doc
from .lifecycle import Lifecycle
from .models import Models
from .protection import IntegrityViolation, KeyUnavailable
from .retry import RetryPolicy, attempts

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


@dataclass
class VerifyReport:
    checked: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)


async def verify_database(db: Database, lifecycle: Lifecycle, progress: Progress) -> VerifyReport:
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
    return report


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
            writes = []
            for doc in todo:
                try:
                    lifecycle.verify(doc)  # first: a poisoned document is skipped and named, whatever it holds
                    model = model_of(models, doc)
                    if model is None and not idempotency.is_record(doc):
                        report.skipped.append((doc["_id"], f"type {doc.get('type')!r} not in the models file"))
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
            results = await db.bulk_docs(writes)
            report.rewritten += sum(1 for r in results if r.get("ok"))
            conflicted = [r["id"] for r in results if r.get("error") == "conflict"]
            todo = (
                [r["doc"] for r in (await db.all_docs(keys=conflicted, include_docs=True)).rows if r.get("doc")]
                if conflicted
                else []
            )
        else:
            report.skipped += [(doc["_id"], "kept changing; run again") for doc in todo]
        progress.advance(len(page))
    progress.finish()
    return report
