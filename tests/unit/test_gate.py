"""The credential gate (``data_service/couchdb/gate.py``) through a fake transport: once
CouchDB refuses the credentials, nothing is sent but one probe per growing pause, shared
by every worker, so no traffic can add up to CouchDB's lockout (5 failures in 5 minutes);
and the background jobs log the refusal once."""

from __future__ import annotations

import asyncio
import itertools
import logging

import orjson
import pytest

from data_service.background import every
from data_service.couchdb import (
    AsyncTransport,
    CouchDB,
    CredentialGate,
    CredentialsRefused,
    GateState,
    Request,
    Response,
    Unauthorized,
)
from data_service.couchdb.gate import FIRST_PAUSE, LONGEST_PAUSE, refuses

WRONG = (401, {"error": "unauthorized", "reason": "Name or password is incorrect."})
LOCKED = (
    403,
    {"error": "forbidden", "reason": "Account is temporarily locked due to multiple authentication failures"},
)
NOT_ADMIN = (401, {"error": "unauthorized", "reason": "You are not a server admin."})
OK = (200, {"ok": True})


class Couch(AsyncTransport):
    """Answers ``self.answer``; counts what reached it."""

    def __init__(self) -> None:
        self.answer = OK
        self.sent = 0

    async def handle(self, request: Request) -> Response:
        self.sent += 1
        status, body = self.answer
        return Response(status, orjson.dumps(body))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client(transport: AsyncTransport, state: GateState) -> CouchDB:
    gate = CredentialGate(transport, "svc", "http://couch:5984", state)
    return CouchDB("http://couch:5984", transport=gate)


async def test_a_refusal_stops_sending_until_a_probe_is_accepted(caplog):
    caplog.set_level(logging.INFO, "data_service.couchdb")
    couch, clock = Couch(), Clock()
    db = client(couch, GateState(clock=clock))
    await db.request("GET", "/db")
    couch.answer = WRONG
    with pytest.raises(Unauthorized) as refused:
        await db.request("GET", "/db")
    assert not isinstance(refused.value, CredentialsRefused) and couch.sent == 2
    for _ in range(50):  # traffic while refused: nothing reaches CouchDB
        with pytest.raises(CredentialsRefused, match="not sent: CouchDB refused user 'svc'; the next attempt in 30 s"):
            await db.request("GET", "/db/doc")
    assert couch.sent == 2
    failures = [clock.now]
    while clock.now < failures[0] + 3600:  # an hour of refused probes, one request every second
        clock.now += 1
        try:
            await db.request("GET", "/db")
        except CredentialsRefused:
            continue
        except Unauthorized:
            failures.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(failures)]
    assert gaps[:5] == [FIRST_PAUSE, 60, 120, 240, LONGEST_PAUSE] and set(gaps[4:]) == {LONGEST_PAUSE}
    assert max(sum(1 for t in failures if start <= t < start + 300) for start in failures) == 4  # CouchDB locks at 5
    couch.answer = OK
    clock.now += LONGEST_PAUSE
    assert (await db.request("GET", "/db")).status == 200
    await db.request("GET", "/db")
    assert couch.sent == len(failures) + 3  # open again: every request is sent
    messages = [r.getMessage() for r in caplog.records if r.name == "data_service.couchdb"]
    assert len(messages) == 2 and "refused user 'svc' (Name or password is incorrect.)" in messages[0]
    assert messages[1] == "CouchDB at http://couch:5984 accepts user 'svc' again"


async def test_workers_share_one_probe():
    clock = Clock()
    state = GateState(shared=True, clock=clock)
    couches = [Couch(), Couch()]
    workers = [client(couch, state) for couch in couches]
    couches[0].answer = couches[1].answer = WRONG
    with pytest.raises(Unauthorized):
        await workers[0].request("GET", "/db")
    with pytest.raises(CredentialsRefused):
        await workers[1].request("GET", "/db")  # refused by what worker 0 saw
    clock.now += FIRST_PAUSE
    outcomes = await asyncio.gather(*(w.request("GET", "/db") for w in workers * 3), return_exceptions=True)
    assert sum(not isinstance(o, CredentialsRefused) for o in outcomes) == 1  # one probe for the sidecar
    assert couches[0].sent + couches[1].sent == 2


async def test_what_counts_as_refused_credentials():
    assert refuses(*_status_reason(WRONG)) and refuses(*_status_reason(LOCKED))
    assert not refuses(*_status_reason(NOT_ADMIN))  # a member asking for /_membership: rights, not credentials
    assert not refuses(403, "You are not allowed to access this db.") and not refuses(403, "forbidden by validate")
    couch, clock = Couch(), Clock()
    db = client(couch, GateState(clock=clock))
    couch.answer = NOT_ADMIN
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await db.request("GET", "/_membership")
    assert couch.sent == 3  # the gate stays open


def _status_reason(answer):
    return answer[0], answer[1]["reason"]


async def test_background_jobs_log_a_refusal_once(caplog):
    calls = 0

    async def sweep() -> None:
        nonlocal calls
        calls += 1
        if calls == 7:
            raise asyncio.CancelledError
        if calls < 4 or calls == 6:
            raise CredentialsRefused("GET", "/db", reason="not sent")

    caplog.set_level(logging.WARNING, "data_service")
    with pytest.raises(asyncio.CancelledError):
        await every(0, sweep)
    warnings = [r.getMessage() for r in caplog.records if r.name == "data_service"]
    assert len(warnings) == 2 and all(w.startswith("sweep: CouchDB refused it: ") for w in warnings)  # calls 1, 6
