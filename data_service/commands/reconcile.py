"""``data-service reconcile``: merge every conflicted document once."""

from __future__ import annotations

import sys

from ..config import Config
from ..server import connect
from .common import lifecycle_of, models_of, reconcile_pass


async def reconcile_command(config: Config) -> int:
    models = models_of(config)
    lifecycle = lifecycle_of(config)
    async with connect(config) as couch:
        report = await reconcile_pass(couch.database(config.database), lifecycle, models, sys.stderr)
    return 0 if report is not None and report.complete else 1
