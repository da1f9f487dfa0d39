"""``data-service reencrypt``: protect every document with the primary keys (after a rotation)."""

from __future__ import annotations

from ..config import Config
from ..maintenance import document_count, reencrypt_database
from ..progress import Progress
from ..server import connect
from .common import lifecycle_of, models_of, reconcile_first


async def reencrypt_command(config: Config) -> int:
    lifecycle, models = lifecycle_of(config), models_of(config)
    async with connect(config) as couch:
        db = couch.database(config.database)
        merged = await reconcile_first(db, lifecycle, models, "reencrypt")  # old ciphertexts in losing leaves too
        if merged is not None and not merged.complete:
            print("reencrypt: some conflicts remain (see above); their losing revisions are not re-encrypted")
        report = await reencrypt_database(db, lifecycle, models, Progress("reencrypt", await document_count(db)))
    for docid, why in report.skipped:
        print(f"SKIPPED {docid}: {why}")
    print(
        f"reencrypt: {report.checked} checked, {report.rewritten} rewritten, "
        f"{report.current} already current, {len(report.skipped)} skipped"
    )
    if report.stale_lookup_hashes:
        print(
            f"reencrypt: {report.stale_lookup_hashes} sha3-512 values stay under older lookup keys "
            "(a hash cannot be re-keyed without its plaintext); keep those keys enabled"
        )
    return 1 if report.skipped else 0
