"""Replication conflicts: one pass over every conflicted document (the background
sweep of ``serve`` and ``data-service reconcile``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..background import every
from ..couchdb import Database
from ..design import CONFLICTS_NAME, VIEW
from ..models import Models, model_of
from .reconciler import Outcome, Reconciler, Status

log = logging.getLogger("data_service.conflicts")
PAGE = 100


@dataclass
class SweepReport:
    conflicted: int = 0
    resolved: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def having(self, status: Status) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is status]

    @property
    def discarded(self) -> list[tuple[str, str, str]]:
        return [(o.docid, rev, why) for o in self.outcomes for rev, why in o.discarded]

    @property
    def complete(self) -> bool:
        return not any(self.having(status) for status in (Status.UNRESOLVABLE, Status.TAMPERED, Status.BUSY))


async def sweep(reconciler: Reconciler, models: Models, progress: Any = None, page: int = PAGE) -> SweepReport:
    """One pass over the ``ds_conflicts`` view, ``page`` documents at a time.
    ``progress`` (``progress.Progress``) advances per document."""
    report = SweepReport()
    async for rows in reconciler.db.pages(CONFLICTS_NAME, VIEW, size=page):
        # The view only names candidates: on a cluster it is read from one copy per shard range,
        # which may lag behind acknowledged writes. The reconciler reads every leaf again from
        # every copy before anything is counted or written.
        items = [(model_of(models, {"type": row["key"][0]}), row["id"]) for row in rows]
        outcomes = await reconciler.reconcile(items)
        report.outcomes += outcomes
        report.conflicted += sum(1 for o in outcomes if o.status not in (Status.CLEAN, Status.GONE))
        report.resolved += sum(1 for o in outcomes if o.status is Status.RESOLVED)
        if progress is not None:
            progress.advance(len(rows))
    if progress is not None:
        progress.finish()
    return report


async def conflicted_count(db: Database) -> int:
    """How many documents the ``ds_conflicts`` view lists now."""
    return (await db.view(CONFLICTS_NAME, VIEW, limit=0)).total_rows or 0


async def run_sweeper(reconciler: Reconciler, models: Models, interval: float) -> None:
    """The background task of ``serve``: a sweep every ``interval`` seconds, until cancelled."""

    async def reconcile_conflicts() -> None:
        report = await sweep(reconciler, models)
        if report.conflicted:
            log.info(
                "reconcile: %d conflicted, %d resolved, %d unresolvable, %d busy",
                report.conflicted,
                report.resolved,
                len(report.having(Status.UNRESOLVABLE)),
                len(report.having(Status.BUSY)),
            )

    await every(interval, reconcile_conflicts)
