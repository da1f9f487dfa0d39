"""The read cache's change feed (``store/cachefeed.py``) on the in-memory CouchDB: live
from ``now``; a change made elsewhere drops its entry; a failed poll is
confirmed from the last position and drops what it missed; a feed that cannot go on
flushes the cache and starts over; one that cannot start retries until CouchDB answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from support import SAMPLE_MODELS, until

from data_service.cache import Cache
from data_service.couchdb import IdPool
from data_service.couchdb.memory import Fault, MemoryServer, memory_couch
from data_service.keys import KeysDir
from data_service.models import load_models
from data_service.protection import Keyring
from data_service.store import DocumentStore

NOTE = load_models(SAMPLE_MODELS).get("note")


def changes(since: str | None = None, feed: str | None = None):
    """Matches the feed's ``_changes`` requests (``since``/``feed`` as given, or any)."""

    def matches(request) -> bool:
        params = dict(request.params)
        return (
            request.path == "/db/_changes"
            and (since is None or params.get("since") == since)
            and (feed is None or params.get("feed") == feed)
        )

    return matches


@pytest.fixture
async def sidecars(keys_dir):
    """(ours, theirs): a store with a read cache and its feed, and another sidecar's store
    on the same server (no cache: this cache hears of its writes only through the feed)."""
    server = MemoryServer()
    keys = Keyring(KeysDir(keys_dir), "db")
    async with memory_couch(server) as mine, memory_couch(server) as other:
        await mine.database("db").create()
        ours = DocumentStore(mine.database("db"), IdPool(mine), keys, cache=Cache(1 << 20))
        theirs = DocumentStore(other.database("db"), IdPool(other), keys)
        yield ours, theirs


@contextlib.asynccontextmanager
async def following(store: DocumentStore):
    task = asyncio.create_task(store.follow_changes())
    try:
        await until(lambda: holds(store.cache.live), "the cache feed goes live")
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def holds(value: bool) -> bool:
    """``until`` awaits its check: a condition already computed."""
    return value


async def cached_note(ours: DocumentStore) -> str:
    answer = await ours.create(NOTE, {"title": "t"})
    assert ours.cache.peek(answer.id, "note") is not None  # its own write, remembered
    return answer.id


async def test_a_change_made_elsewhere_drops_the_entry(sidecars):
    ours, theirs = sidecars
    async with following(ours):
        docid = await cached_note(ours)
        seen = ours.feed.changes_seen
        await theirs.patch(NOTE, docid, {"title": "theirs"}, None)
        await until(lambda: holds(ours.cache.peek(docid, "note") is None), "the entry dropped")
        assert ours.feed.changes_seen > seen and ours.feed.age < 5.0
        assert (await ours.get(NOTE, docid)).etag.startswith('"2-')


async def test_a_failed_poll_is_confirmed_from_where_it_was(sidecars, caplog):
    """The long poll fails after a change was made elsewhere: the confirming request from
    the same seq reports it, the entry goes, and the cache stays live (nothing flushed)."""
    ours, theirs = sidecars
    async with following(ours):
        docid = await cached_note(ours)

        async def elsewhere(_request) -> None:
            await theirs.patch(NOTE, docid, {"title": "missed"}, None)

        failed = Fault(changes(feed="longpoll"), before=elsewhere, applied=False, status=400)
        ours.db.couch.transport.inject(failed)
        await until(lambda: holds(failed.hits == 1), "the long poll failed")
        await until(lambda: holds(ours.cache.peek(docid, "note") is None), "the confirming request reports the change")
        assert ours.cache.stats.flushes == 1  # not flushed
        assert ours.cache.live and not ours.feed.down and "bypassed" not in caplog.text


async def test_a_feed_that_cannot_resume_flushes_and_starts_over(sidecars, caplog):
    ours, _ = sidecars
    caplog.set_level(logging.INFO, logger="data_service.cache")
    async with following(ours):
        docid = await cached_note(ours)
        stuck = Fault(lambda r: changes()(r) and dict(r.params).get("since") != "now", applied=False, status=400)
        stuck.times = 2  # the poll and the resume
        ours.db.couch.transport.inject(stuck)
        await until(lambda: holds(ours.cache.stats.flushes == 2 and ours.cache.live), "flushed and live again")
        assert ours.cache.peek(docid, "note") is None and len(ours.cache) == 0
        assert "cache bypassed until CouchDB answers the feed" in caplog.text


async def test_a_feed_that_cannot_start_retries_until_couchdb_answers(sidecars, caplog):
    ours, _ = sidecars
    ours.db.couch.transport.inject(Fault(changes(since="now"), applied=False, status=400))
    async with following(ours):
        assert ours.cache.live and "cannot start" in caplog.text


async def test_without_a_cache_there_is_nothing_to_follow(sidecars):
    _, theirs = sidecars
    await asyncio.wait_for(theirs.follow_changes(), 1)  # returns at once
