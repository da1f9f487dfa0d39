"""The fault-injecting proxy (tests/faults/) in front of the server under test: a dropped answer
to a PUT, retried, finds the first attempt stored; a held long poll answers once released.
The proxy's own behaviour is tests/unit/test_faults.py's."""

from __future__ import annotations

import asyncio

import pytest
from faults import FaultProxy
from support import unique_name, until

from data_service.couchdb import Conflict, CouchDB, NotFound
from data_service.couchdb.client import split_credentials
from data_service.couchdb.transport import path


async def _true(value) -> bool:
    return bool(value)


async def test_through_the_server_under_test(couchdb_url):
    """A dropped answer to a PUT on the real server: the CouchDB client retries, and the
    retry finds the first attempt stored (409); a held long poll answers once released."""
    async with CouchDB(couchdb_url) as admin:
        db = admin.database(unique_name())
        await db.create()
        try:
            async with FaultProxy.to(couchdb_url) as proxy:
                async with CouchDB(proxy.url, auth=split_credentials(couchdb_url)[1]) as through:
                    docpath = path(db.name, "doc1")
                    proxy.rule("drop", "PUT", f"^{docpath}$", times=1)
                    with pytest.raises(Conflict):  # the retry: the first attempt was stored
                        await through.request("PUT", docpath, json={"v": 1})
                    first, second = proxy.seen("PUT", f"^{docpath}$")
                    assert (first.action, first.status, first.delivered) == ("drop", 201, False)
                    assert (second.action, second.status, second.delivered) == (None, 409, True)
                    assert (await db.get("doc1"))["v"] == 1

                    hold = proxy.rule("hold", "GET", r"/_changes$", query="feed=longpoll")
                    feed = asyncio.create_task(
                        through.json("GET", path(db.name, "_changes"), params={"feed": "longpoll", "since": 0})
                    )
                    await hold.reached(1)
                    await until(lambda: _true(proxy.seen("GET", "/_changes$")[0].answered), "the server answered")
                    assert not feed.done()
                    hold.release()
                    assert [row["id"] for row in (await feed)["results"]] == ["doc1"]
        finally:
            await db.drop(missing_ok=True)
    with pytest.raises(NotFound):
        async with CouchDB(couchdb_url) as admin:
            await admin.database(db.name).info()
