"""The CouchDB client through a fake transport: error mapping, retries, encoding."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import orjson
import pytest
from support.fakes import FakeTransport, scripted

from data_service.couchdb import (
    AsyncTransport,
    BadRequest,
    Conflict,
    ConnectFailed,
    CouchDB,
    CouchDBError,
    Forbidden,
    IdPool,
    NotFound,
    PreconditionFailed,
    Request,
    Response,
    Timeout,
    Unauthorized,
    Unavailable,
    Unsupported,
)
from data_service.couchdb.client import split_credentials
from data_service.couchdb.transport import path
from data_service.retry import RetryPolicy


class Sleeps:
    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def client(transport, retry=RetryPolicy(), sleep=None) -> CouchDB:
    return CouchDB("http://admin:s3cret@couch.invalid:5984", transport=transport, retry=retry, sleep=sleep or Sleeps())


@pytest.mark.parametrize(
    "status, cls, builtin",
    [
        (400, BadRequest, ValueError),
        (401, Unauthorized, PermissionError),
        (403, Forbidden, PermissionError),
        (404, NotFound, KeyError),
        (409, Conflict, CouchDBError),
        (412, PreconditionFailed, CouchDBError),
        (500, Unavailable, ConnectionError),
        (503, Unavailable, ConnectionError),
        (418, CouchDBError, Exception),
    ],
)
async def test_status_maps_to_typed_error(status, cls, builtin):
    transport = FakeTransport(lambda req: (status, {"error": "some_error", "reason": "some reason"}))
    with pytest.raises(cls) as caught:
        await client(transport, RetryPolicy(attempts=1)).database("db").get("a/b")
    exc = caught.value
    assert type(exc) is cls and isinstance(exc, builtin)
    assert (exc.status, exc.error, exc.reason) == (status, "some_error", "some reason")
    assert (exc.method, exc.path) == ("GET", "/db/a%2Fb")
    assert "s3cret" not in str(exc) and "s3cret" not in repr(exc)


async def test_non_json_error_body_still_maps():
    transport = FakeTransport(lambda req: (404, None))
    with pytest.raises(NotFound) as caught:
        await client(transport).database("db").info()
    assert caught.value.error is None


async def test_url_credentials_are_split_off():
    assert split_credentials("https://u%40x:p%3Aw@h:6984/") == ("https://h:6984", ("u@x", "p:w"))
    assert split_credentials("http://[::1]:5984") == ("http://[::1]:5984", None)
    assert client(FakeTransport(lambda r: (200, {}))).url == "http://couch.invalid:5984"


async def test_accepted_202_is_success_flagged():
    transport = FakeTransport(lambda req: (202, {"ok": True, "id": "d", "rev": "1-a"}))
    result = await client(transport).database("db").put({"_id": "d", "v": 1})
    assert (result.id, result.rev, result.accepted) == ("d", "1-a", True)
    transport.answer = lambda req: (201, {"ok": True, "id": "d", "rev": "2-b"})
    assert (await client(transport).database("db").put({"_id": "d", "_rev": "1-a"})).accepted is False


async def test_idempotent_request_retried_with_capped_jittered_backoff():
    sleeps = Sleeps()
    transport = scripted(
        (503, {}), (502, {}), Timeout("GET", "/"), ConnectFailed("GET", "/"), (504, {}), (200, {"db_name": "db"})
    )
    policy = RetryPolicy(attempts=6, base=0.1, cap=0.3, random=lambda: 1.0)
    assert (await client(transport, policy, sleeps).database("db").info()) == {"db_name": "db"}
    assert len(transport.requests) == 6
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])


async def test_full_jitter_spreads_within_the_ceiling():
    policy = RetryPolicy(attempts=3, base=0.1, cap=1.0)
    delays = [policy.delay(2) for _ in range(500)]
    assert all(0 <= d <= 0.4 for d in delays)
    assert max(delays) - min(delays) > 0.2  # not a constant


async def test_retries_are_bounded_then_the_error_surfaces():
    sleeps = Sleeps()
    transport = FakeTransport(lambda req: (503, {"error": "unavailable"}))
    with pytest.raises(Unavailable):
        await client(transport, RetryPolicy(attempts=4), sleeps).database("db").get("x")
    assert len(transport.requests) == 4 and len(sleeps.delays) == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.bulk_docs([{"_id": "a"}]),
        lambda db: db.couch.request("POST", "/db", json={}),
    ],
)
async def test_non_idempotent_post_is_never_retried(call):
    transport = FakeTransport(lambda req: (503, {}))
    with pytest.raises(Unavailable):
        await call(client(transport).database("db"))
    assert len(transport.requests) == 1
    transport.requests.clear()
    transport.answer = lambda req: Timeout(req.method, req.path)
    with pytest.raises(Timeout):
        await call(client(transport).database("db"))
    assert len(transport.requests) == 1


async def test_read_only_and_replay_posts_are_retried():
    transport = scripted((503, {}), (200, {"rows": []}))
    await client(transport).database("db").view("d", "v", keys=["a"])
    assert [r.method for r in transport.requests] == ["POST", "POST"]
    transport = scripted((503, {}), (201, []))
    await client(transport).database("db").bulk_docs([{"_id": "a", "_rev": "1-x"}], new_edits=False)
    assert len(transport.requests) == 2


@pytest.mark.parametrize("status", [400, 404, 409, 412, 500])
async def test_deterministic_failures_are_not_retried(status):
    transport = FakeTransport(lambda req: (status, {"error": "x"}))
    with pytest.raises(CouchDBError):
        await client(transport).database("db").get("x")
    assert len(transport.requests) == 1


async def test_ids_and_view_parameters_are_encoded():
    transport = FakeTransport(lambda req: (200, {"rows": [], "total_rows": 0, "offset": 0}))
    db = client(transport).database("my/db")
    await db.view(
        "by name",
        "v",
        startkey=["a b", 1],
        endkey=["a b", {}],
        startkey_docid="x/y&z",
        include_docs=True,
        descending=False,
        limit=5,
    )
    request = transport.requests[-1]
    assert request.path == "/my%2Fdb/_design/by%20name/_view/v"
    assert dict(request.params) == {
        "startkey": '["a b",1]',
        "endkey": '["a b",{}]',
        "startkey_docid": "x/y&z",
        "include_docs": "true",
        "descending": "false",
        "limit": "5",
    }
    assert request.target.endswith("startkey_docid=x%2Fy%26z&include_docs=true&descending=false&limit=5")
    await db.view("d", "v", keys=[["k", 1]])
    assert orjson.loads(transport.requests[-1].body) == {"keys": [["k", 1]]}


@pytest.mark.parametrize(
    "segment", ["", "abc-_.~09XZ", "a b", "a/b", "%41", "a?b#c&d=e", "é", "€", "_design", "a\nb", "+:@!$'()*,;"]
)
def test_a_path_segment_is_encoded_as_quote_with_nothing_safe(segment):
    """The unreserved-only shortcut in ``path`` gives what ``quote(s, safe="")`` gives."""
    assert path("db", segment) == "/db/" + quote(segment, safe="")


async def test_node_config_unsupported_on_pouchdb_server():
    transport = FakeTransport(lambda req: (200, {"express-pouchdb": "Welcome!", "version": "4.2.0"}))
    couch = client(transport)
    with pytest.raises(Unsupported) as caught:
        await couch.config_get("uuids", "algorithm")
    assert isinstance(caught.value, NotFound)
    assert (await couch.server_info()).kind == "pouchdb-server"
    assert [r.path for r in transport.requests] == ["/"]  # server info fetched once, cached


async def test_node_config_on_couchdb():
    def answer(req):
        if req.path == "/":
            return 200, {"couchdb": "Welcome", "version": "3.5.2"}
        return 200, "sequential"

    transport = FakeTransport(answer)
    assert await client(transport).config_get("uuids", "algorithm") == "sequential"
    assert transport.requests[-1].path == "/_node/_local/_config/uuids/algorithm"


async def test_longpoll_changes_time_out_on_our_side():
    transport = FakeTransport(lambda req: Timeout(req.method, req.path))
    changes = (
        await client(transport, RetryPolicy(attempts=1))
        .database("db")
        .changes(feed="longpoll", since="5-abc", timeout=0.5)
    )
    assert changes["results"] == [] and changes["last_seq"] == "5-abc"
    assert dict(transport.requests[0].params)["timeout"] == "500"
    assert transport.requests[0].timeout == pytest.approx(2.5)
    with pytest.raises(Timeout):
        await client(transport, RetryPolicy(attempts=1)).database("db").changes(feed="normal")


async def test_changes_with_a_deadline_raise_when_no_answer_came_by_then():
    """The read cache's feed: a silent long poll is a failure, not "no changes"; the
    deadline bounds a request that hangs, retries included."""
    transport = FakeTransport(lambda req: Timeout(req.method, req.path))
    db = client(transport, RetryPolicy(attempts=1)).database("db")
    with pytest.raises(Timeout):
        await db.changes(feed="longpoll", since="5-abc", timeout=1.0, deadline=2.0)
    assert transport.requests[0].timeout == pytest.approx(2.0)

    class Hangs(AsyncTransport):
        async def handle(self, request: Request) -> Response:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

    with pytest.raises(Timeout, match=r"no answer within 0\.05 s"):
        await client(Hangs(), RetryPolicy(attempts=3)).database("db").changes(feed="normal", since=3, deadline=0.05)


async def test_id_pool_shares_refills_among_concurrent_takers():
    counter = iter(range(10**6))

    async def uuids_answer(req):
        await asyncio.sleep(0.001)
        count = int(dict(req.params)["count"])
        return Response(200, orjson.dumps({"uuids": [f"id{next(counter)}" for _ in range(count)]}))

    class SlowTransport(FakeTransport):
        async def handle(self, request):
            self.requests.append(request)
            return await uuids_answer(request)

    transport = SlowTransport(None)
    pool = IdPool(client(transport), batch=50, low_water=10)
    ids = await asyncio.gather(*(pool.take() for _ in range(1000)))
    assert len(set(ids)) == 1000
    assert len(transport.requests) <= 3  # one refill sized for all waiters, not 20 batches


async def test_id_pool_failure_reaches_takers_and_recovers():
    transport = scripted(ConnectFailed("GET", "/_uuids"), (200, {"uuids": ["a", "b"]}))
    pool = IdPool(client(transport, RetryPolicy(attempts=1)), batch=2, low_water=0)
    with pytest.raises(ConnectFailed):
        await pool.take()
    assert await pool.take() == "a"


@pytest.mark.parametrize(
    "server, expect_native",
    [
        ({"couchdb": "Welcome", "version": "3.5.2"}, True),
        ({"express-pouchdb": "Welcome!", "version": "4.2.0"}, False),
    ],
)
async def test_startkey_docid_native_or_emulated(server, expect_native):
    rows = [{"id": f"d{i}", "key": "k", "value": None} for i in range(6)]

    def answer(req):
        if req.path == "/":
            return 200, server
        params = dict(req.params)
        skip, limit = int(params.get("skip", 0)), int(params["limit"])
        return 200, {"rows": rows[skip : skip + limit], "total_rows": 6, "offset": skip}

    transport = FakeTransport(answer)
    page = await client(transport).database("db").view("d", "v", startkey="k", startkey_docid="d3", limit=2)
    sent = [dict(r.params) for r in transport.requests if r.path != "/"]
    if expect_native:
        assert sent == [{"startkey": '"k"', "startkey_docid": "d3", "limit": "2"}]
    else:  # emulated: reads on with skip until rows at or after d3 fill the page
        assert all("startkey_docid" not in p for p in sent) and len(sent) == 3
        assert [row["id"] for row in page.rows] == ["d3", "d4"]
