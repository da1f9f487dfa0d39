"""Reading a model document: what CouchDB holds (``reads``), reconciled when it has to
be (``reconciler``: conflicts, or deleted leaves above the winner), then opened by the
lifecycle — verified *first*, then classified. Every read of a model document by the
store goes through ``Reader.open``; failures are logged (by id, never content) and
counted here, once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ..lifecycle import Lifecycle
from ..models import MigrationFailed, ModelType
from ..protection import IntegrityViolation, KeyUnavailable
from ..vocabulary import Stored
from .errors import DocumentNotFound
from .reads import Held, Reads
from .reconciler import Reconciler
from .results import Stats

log = logging.getLogger("data_service.store")


class Reader:
    def __init__(self, reads: Reads, reconciler: Reconciler, lifecycle: Lifecycle, stats: Stats) -> None:
        self.reads, self.reconciler, self.lifecycle, self.stats = reads, reconciler, lifecycle, stats

    async def read(self, model: ModelType, docid: str) -> Stored:
        """The current stored document; DocumentNotFound unless it is a live ``model``."""
        return await self.open(model, await self.reads.one(docid))

    async def open(self, model: ModelType, held: Held, *, deleted: bool = False) -> Stored:
        """``held`` as ``model``'s current version (reconciled first when it has to be;
        an older version upgraded): DocumentNotFound unless it is live (or soft-deleted,
        with ``deleted``); IntegrityViolation, KeyUnavailable, MigrationFailed."""
        doc = held.doc
        if doc is not None and not held.settled:  # a rollback it finds is counted and logged by it
            doc = await self.reconciler.resolve(model, doc, frozenset([doc["_rev"], *held.conflicts]), bool(held.above))
        if doc is None:
            raise DocumentNotFound(held.id)
        with self.counted(held.id):
            current = self.lifecycle.open(model, doc, deleted=deleted)
        if current is None:
            raise DocumentNotFound(held.id)
        return current

    @contextlib.contextmanager
    def counted(self, docid: str) -> Iterator[None]:
        """Log and count what opening ``docid`` raises."""
        try:
            yield
        except IntegrityViolation as exc:
            self.stats.integrity_violations += 1
            log.warning("integrity violation: document %s: %s", exc.docid, exc.reason)
            raise
        except KeyUnavailable as exc:
            log.warning("document %s: %s", docid, exc)
            raise
        except MigrationFailed as exc:
            log.warning("migration failed: document %s: %s", exc.docid, exc.reason)
            raise
