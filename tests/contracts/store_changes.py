"""Store contract, part 5: the verified change feed of a type (``store/changes.py``) —
every change as callers see it, a document failing its check reported and never passed
on (whatever type it now claims; a member's rollback too), older versions upgraded,
positions that resume exactly and belong to their feed, long polls that answer when
something changes. Subclassed per backend."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from contracts.store_setup import MEMBER_V1, MEMBER_V2, NOTE, PAST, USER, StoreSetup, roll_back

from data_service.lifecycle import Lifecycle
from data_service.query import QueryError
from data_service.store import ANY_REVISION


class StoreChangesContract(StoreSetup):
    async def test_every_change_as_callers_see_it(self, store):
        notes = [await store.create(NOTE, {"title": f"n{i}"}) for i in range(3)]
        await store.create(USER, {"email": "a@example.com", "name": "A"})
        first = await store.changes(NOTE, None, 100, None)
        shown = {item["id"]: item for item in first.results}
        assert sorted(shown) == sorted(n.id for n in notes) and first.omitted == []  # only notes
        assert all(shown[n.id]["doc"] == orjson.loads(n.body) and shown[n.id]["rev"] == n.rev for n in notes)
        edited = await store.patch(NOTE, notes[1].id, {"title": "edited"}, None)
        await store.delete(NOTE, notes[2].id, frozenset({notes[2].rev}))
        after = await store.changes(NOTE, first.last, 100, None)
        changed = {item["id"]: item for item in after.results}
        assert sorted(changed) == sorted([notes[1].id, notes[2].id])
        assert changed[notes[2].id]["deleted"] is True and "doc" not in changed[notes[2].id]
        assert changed[notes[1].id]["doc"] == orjson.loads(edited.body) and changed[notes[1].id]["rev"] == edited.rev
        assert (await store.changes(NOTE, after.last, 100, None)).results == []

    async def test_a_document_failing_its_check_is_reported_never_passed_on(self, store, db):
        note = await store.create(NOTE, {"title": "t"})
        user = await store.create(USER, {"email": "a@example.com", "name": "A"})
        await db.put({**(await db.get(note.id)), "title": "Mallory's"})  # edited, not signed again
        await db.put({**(await db.get(user.id)), "type": "note_v1.0"})  # retyped
        for model in (NOTE, USER):  # neither vanishes from the feed it belonged to
            feed = await store.changes(model, None, 100, None)
            assert feed.results == [] and {o["id"] for o in feed.omitted} == {note.id, user.id}
            assert {o["code"] for o in feed.omitted} == {"integrity_violation"} and "Mallory" not in str(feed.events)

    async def test_a_member_rollback_is_reported(self, store, db):
        note = await store.create(NOTE, {"title": "one"})
        first = await db.get(note.id)
        await store.replace(NOTE, note.id, {"title": "two"}, frozenset({ANY_REVISION}))
        await roll_back(db, note.id, first)
        feed = await store.changes(NOTE, None, 100, None)
        assert feed.results == [] and [o["id"] for o in feed.omitted] == [note.id]

    async def test_an_older_version_is_passed_on_upgraded(self, store, db, ring):
        old = Lifecycle(ring, "w-v1").create(MEMBER_V1, "m1", {"nick": "ann"}, {}, PAST).doc
        await db.bulk_docs([{**old, "_rev": "1-aa", "_revisions": {"start": 1, "ids": ["aa"]}}], new_edits=False)
        [item] = (await store.changes(MEMBER_V2, None, 100, None)).results
        assert item["doc"]["name"] == "ann" and item["doc"]["meta"]["version"] == "2.0" and item["rev"] == "1-aa"

    async def test_positions_resume_exactly_and_belong_to_their_feed(self, store):
        notes = [await store.create(NOTE, {"title": f"n{i}"}) for i in range(5)]
        page = await store.changes(NOTE, None, 2, None)
        seen = [item["id"] for item in page.results]
        while len(seen) < 5:  # from the last item seen, like a reconnecting consumer
            page = await store.changes(NOTE, page.results[-1]["position"], 2, None)
            seen += [item["id"] for item in page.results]
        assert sorted(seen) == sorted(n.id for n in notes) and len(seen) == 5  # each once
        for foreign in ((USER, page.last), (NOTE, "AAAA")):
            with pytest.raises(QueryError):
                await store.changes(*foreign, 10, None)

    async def test_a_long_poll_answers_when_something_changes(self, store):
        now = await store.changes(NOTE, "now", 10, None)
        assert now.results == []
        waiting = asyncio.ensure_future(store.changes(NOTE, now.last, 10, 20.0))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        note = await store.create(NOTE, {"title": "late"})
        assert [item["id"] for item in (await asyncio.wait_for(waiting, 10)).results] == [note.id]
