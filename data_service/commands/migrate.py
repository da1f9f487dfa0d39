"""``data-service migrate``: upgrade every document of an older type version, in batches."""

from __future__ import annotations

from ..config import Config, ConfigError
from ..maintenance import document_count, migrate_database
from ..progress import Progress
from ..server import connect
from .common import lifecycle_of, models_of, reconcile_first


def batch_of(args: dict) -> int:
    try:
        batch = int(args["--batch"])
    except ValueError:
        batch = 0
    if not 1 <= batch <= 10000:
        raise ConfigError("--batch: a number of documents from 1 to 10000")
    return batch


async def migrate_command(config: Config, batch: int) -> int:
    lifecycle, models = lifecycle_of(config), models_of(config)
    async with connect(config) as couch:
        db = couch.database(config.database)
        await reconcile_first(db, lifecycle, models, "migrate")  # merging upgrades their older leaves too
        report = await migrate_database(
            db, lifecycle, models, Progress("migrate", await document_count(db)), batch=batch
        )
    for docid, why in report.skipped:
        print(f"SKIPPED {docid}: {why}")
    print(
        f"migrate: {report.checked} checked, {report.migrated} migrated, "
        f"{report.current} already current, {len(report.skipped)} skipped"
    )
    return 1 if report.skipped else 0
