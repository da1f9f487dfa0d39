"""Whole-database jobs: tamper scan (``verify``) and re-protection after key
rotation (``reencrypt``). Both page through ``_all_docs`` and show progress."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, TextIO

from . import documents, idempotency
from .couchdb import Database
from .models import Models, ModelType
from .protection import IntegrityViolation, KeyUnavailable, Protector

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


async def pages(db: Database, size: int = PAGE) -> AsyncIterator[list[dict]]:
    """Every document but design docs, in id order, ``size`` at a time (keyset paging)."""
    start = None
    while True:
        options = {"include_docs": True, "limit": size + (1 if start else 0)}
        if start is not None:
            options["startkey"] = start
        rows = (await db.all_docs(**options)).rows
        if start is not None and rows and rows[0]["id"] == start:
            rows = rows[1:]
        if not rows:
            return
        start = rows[-1]["id"]
        yield [row["doc"] for row in rows if not row["id"].startswith("_design/") and row.get("doc")]


@dataclass
class VerifyReport:
    checked: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)


async def verify_database(db: Database, protector: Protector, progress: Progress) -> VerifyReport:
    report = VerifyReport()
    async for page in pages(db):
        for doc in page:
            report.checked += 1
            try:
                protector.verify(doc)
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


def reprotected(protector: Protector, model: ModelType, doc: dict) -> tuple[dict | None, int]:
    """``doc`` with readable protected values re-protected and the signature renewed,
    or None if everything is already under the primary keys. Also returns how many
    ``sha3-512`` values stay under an old lookup key (a hash cannot be re-keyed)."""
    changed = dict(doc)
    stale_hashes = 0
    for name, value in documents.properties(doc).items():
        prop = model.properties.get(name)
        if prop is None or protector.is_current(model, name, value):
            continue
        if prop.readable:
            changed[name] = protector.protect(model, doc["_id"], name, protector.reveal(model, doc["_id"], name, value))
        else:
            stale_hashes += 1
    if changed == doc and doc.get("sig", {}).get("kid") == protector.signing.primary:
        return None, stale_hashes
    return protector.sign(changed), stale_hashes


def resigned(protector: Protector, doc: dict) -> dict | None:
    """An Idempotency-Key record (nothing protected) signed under the primary key, or None."""
    return None if doc.get("sig", {}).get("kid") == protector.signing.primary else protector.sign(doc)


async def reencrypt_database(db: Database, protector: Protector, models: Models, progress: Progress,
                             attempts: int = 5) -> ReencryptReport:
    """Re-protect every document under the primary keys, page by page with revs.
    Safe beside live traffic: a document changed meanwhile (409) is re-read and
    redone; re-running skips what is already current, so an interrupted run resumes."""
    report = ReencryptReport()
    async for page in pages(db):
        report.checked += len(page)
        todo = page
        for _ in range(attempts):
            writes = []
            for doc in todo:
                model = documents.model_of(models, doc)
                if model is None and not idempotency.is_record(doc):
                    report.skipped.append((doc["_id"], f"type {doc.get('type')!r} not in the models file"))
                    continue
                try:
                    protector.verify(doc)
                    new, stale = reprotected(protector, model, doc) if model else (resigned(protector, doc), 0)
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
            todo = [r["doc"] for r in (await db.all_docs(keys=conflicted, include_docs=True)).rows
                    if r.get("doc")] if conflicted else []
        else:
            report.skipped += [(doc["_id"], "kept changing; run again") for doc in todo]
        progress.advance(len(page))
    progress.finish()
    return report
