"""What several commands share: the models file, a lifecycle, one reconcile pass."""

from __future__ import annotations

import sys
from typing import TextIO

from ..config import Config, ConfigError
from ..conflicts.bookkeeping import new_writer_id
from ..couchdb import Database, NotFound
from ..lifecycle import Lifecycle
from ..models import Models, load_models
from ..progress import Progress
from ..server import keyring
from ..store import Stats
from ..store.reconciler import Reconciler, Status
from ..store.sweeper import SweepReport, conflicted_count, sweep


def models_of(config: Config) -> Models:
    if not config.models_path:
        raise ConfigError("--models is required")
    return load_models(config.models_path)


def lifecycle_of(config: Config) -> Lifecycle:
    return Lifecycle(keyring(config), new_writer_id())


async def reconcile_pass(
    db: Database, lifecycle: Lifecycle, models: Models, out: TextIO, required: bool = True
) -> SweepReport | None:
    """One sweep with progress on ``out``; prints what is left. Without the conflicts
    view (not installed): ConfigError, or None when not ``required``."""
    reconciler = Reconciler(db, lifecycle, Stats())
    try:
        total = await conflicted_count(db)
        report = await sweep(reconciler, models, Progress("reconcile", total, out=out))
    except NotFound:
        if not required:
            return None
        raise ConfigError(
            f"database {db.name!r} or its _design/ds_conflicts view is missing; run data-service install"
        ) from None
    for outcome in report.outcomes:
        for rev, why in outcome.discarded:
            print(f"DISCARDED {outcome.docid} {rev}: {why}")
        if outcome.status in (Status.UNRESOLVABLE, Status.BUSY, Status.TAMPERED):
            print(f"{outcome.status.upper()} {outcome.docid}: {outcome.reason}")
    print(
        f"reconcile: {report.conflicted} conflicted, {report.resolved} resolved, "
        f"{len(report.having(Status.UNRESOLVABLE))} unresolvable, {len(report.having(Status.BUSY))} busy, "
        f"{len(report.having(Status.TAMPERED))} rolled back, {len(report.discarded)} tampered revisions discarded"
    )
    return report


async def reconcile_first(db: Database, lifecycle: Lifecycle, models: Models, command: str) -> SweepReport | None:
    """A reconcile pass before ``command`` rewrites every document (a conflict's losing
    revisions hold older values too); None, and says so, without the conflicts view."""
    merged = await reconcile_pass(db, lifecycle, models, sys.stderr, required=False)
    if merged is None:
        print(f"{command}: no _design/ds_conflicts view; conflicts were not reconciled first")
    return merged
