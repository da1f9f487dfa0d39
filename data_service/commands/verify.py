"""``data-service verify``: check every document's signature, list the ids that fail."""

from __future__ import annotations

from ..config import Config
from ..maintenance import document_count, verify_database
from ..progress import Progress
from ..server import connect
from .common import lifecycle_of


async def verify_command(config: Config) -> int:
    lifecycle = lifecycle_of(config)
    async with connect(config) as couch:
        db = couch.database(config.database)
        report = await verify_database(db, lifecycle, Progress("verify", await document_count(db)))
    for docid, reason in report.failures:
        print(f"FAILED {docid}: {reason}")
    print(f"verify: {report.checked} documents checked, {len(report.failures)} failed")
    return 1 if report.failures else 0
