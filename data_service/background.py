"""Periodic background jobs of ``serve`` (conflict sweeps, expired-key cleanup)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .couchdb import CouchDBError, NotFound

log = logging.getLogger("data_service")


async def every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled. Failures are logged and
    never end the loop. A missing database or view, and CouchDB refusing the service's
    credentials (``couchdb.gate`` then sends nothing for a while), are logged once until
    the job succeeds again."""
    quiet: str | None = None  # the kind of failure already logged
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except NotFound as exc:
            if quiet != "missing":
                log.warning("%s: %s; run data-service install", job.__name__, exc)
            quiet = "missing"
            continue
        except PermissionError as exc:  # Unauthorized, Forbidden: the credentials or the user's rights
            if quiet != "refused":
                log.warning("%s: CouchDB refused it: %s", job.__name__, exc)
            quiet = "refused"
            continue
        except CouchDBError as exc:
            log.warning("%s: failed: %s", job.__name__, exc)
        except Exception:
            log.exception("%s: failed", job.__name__)
        quiet = None
