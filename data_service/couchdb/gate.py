"""Never retry into CouchDB's lockout: a transport that stops sending once CouchDB has
refused the credentials.

CouchDB 3.5 counts failed logins per user and client address and, past 5 within 5
minutes (``[chttpd_auth_lockout]``: ``threshold``, ``max_lifetime``), answers every
request of that user from that address 403 for the rest of the 5 minutes, right
password or not: one sidecar retrying a wrong password locks out every sidecar sharing
its user and address. So after a refusal (a 401 that is not "you are not an admin",
or the lockout's 403) this transport answers ``CredentialsRefused`` itself, without
sending, and lets one request through as a probe after ``FIRST_PAUSE`` seconds, then
after twice as long each time, capped at ``LONGEST_PAUSE``: at most 4 failed logins in
any 5 minutes, whatever the traffic. A probe CouchDB accepts opens it again. The first
refusal is logged (error), the recovery too (info); nothing in between.

With ``--workers`` the state is one ``GateState`` in shared memory, made before forking,
so the whole sidecar sends one probe per pause, not one per worker.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import orjson

from .errors import Unauthorized
from .transport import AsyncTransport, Request, Response

log = logging.getLogger("data_service.couchdb")

FIRST_PAUSE = 30.0  # seconds before the first probe after a refusal
LONGEST_PAUSE = 300.0  # the pause doubles up to this (CouchDB's lockout lasts 300 s)


class CredentialsRefused(Unauthorized):
    """CouchDB refused the credentials a moment ago; this request was not sent."""


def refused(response: Response) -> str | None:
    """CouchDB's reason when ``response`` refuses the credentials themselves (``refuses``);
    None for any other answer."""
    if response.status not in (401, 403):
        return None
    try:
        body = orjson.loads(response.body)
        reason = str(body.get("reason") or body.get("error") or "") if isinstance(body, dict) else ""
    except orjson.JSONDecodeError:
        reason = ""
    return (reason or str(response.status)) if refuses(response.status, reason) else None


def refuses(status: int | None, reason: str | None) -> bool:
    """Whether CouchDB refused the credentials themselves: a 401 that is not about admin
    rights (which the user may lack, e.g. for ``/_membership``), or the lockout's 403."""
    reason = reason or ""
    return (status == 401 and "admin" not in reason) or (status == 403 and "locked" in reason)


class GateState:
    """When the next probe may go (0: open) and the pause after it; in shared memory
    with a lock across processes when ``shared``."""

    def __init__(self, shared: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self._memory: Any = mmap.mmap(-1, 16) if shared else bytearray(16)
        self._values = memoryview(self._memory).cast("d")  # [next probe (monotonic clock), pause]
        self._lock: Any = multiprocessing.Lock() if shared else contextlib.nullcontext()
        self.clock = clock

    @property
    def closed(self) -> bool:
        return self._values[0] != 0.0

    def admit(self) -> bool | None:
        """True: send (open); None: send as the probe (the next one is pushed back one
        pause, doubled); False: do not send."""
        if not self.closed:
            return True
        with self._lock:
            now = self.clock()
            if not self.closed:
                return True
            if now < self._values[0]:
                return False
            pause = min(LONGEST_PAUSE, self._values[1] * 2)
            self._values[0], self._values[1] = now + pause, pause
            return None

    def close(self) -> bool:
        """After a refusal; True when this closed an open gate."""
        with self._lock:
            if self.closed:
                return False
            self._values[0], self._values[1] = self.clock() + FIRST_PAUSE, FIRST_PAUSE
            return True

    def open(self) -> None:
        with self._lock:
            self._values[0] = 0.0

    def seconds_left(self) -> float:
        return max(0.0, self._values[0] - self.clock()) if self.closed else 0.0


class CredentialGate(AsyncTransport):
    """``inner`` behind the gate; ``user`` and ``url`` name what was refused in the log."""

    def __init__(self, inner: AsyncTransport, user: str, url: str, state: GateState | None = None) -> None:
        self.inner, self.user, self.url = inner, user, url
        self.state = state or GateState()

    async def handle(self, request: Request) -> Response:
        admitted = self.state.admit()
        if admitted is False:
            raise CredentialsRefused(
                request.method,
                request.path,
                reason=f"not sent: CouchDB refused user {self.user!r}; "
                f"the next attempt in {self.state.seconds_left():.0f} s",
            )
        response = await self.inner.handle(request)
        reason = refused(response)
        if reason is not None:
            if self.state.close():
                log.error(
                    "CouchDB at %s refused user %r (%s): sending it nothing for %.0f s, then one request "
                    "at growing intervals until it accepts the credentials (CouchDB locks a user out "
                    "after 5 failed logins); check the password file",
                    self.url,
                    self.user,
                    reason,
                    FIRST_PAUSE,
                )
        elif admitted is None:
            self.state.open()
            log.info("CouchDB at %s accepts user %r again", self.url, self.user)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
