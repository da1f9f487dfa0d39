"""Periodic background jobs of ``serve`` (conflict sweeps, expired-key cleanup)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .couchdb import CouchDBError, NotFound

log = logging.getLogger("data_service")


async def every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled. Failures are logged and
    never end the loop; a missing database or view is logged once until it is back."""
    missing = False
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except NotFound as exc:
            if not missing:
                log.warning("%s: %s; run data-service install", job.__name__, exc)
            missing = True
            continue
        except CouchDBError as exc:
            log.warning("%s: failed: %s", job.__name__, exc)
        except Exception:
            log.exception("%s: failed", job.__name__)
        missing = False
