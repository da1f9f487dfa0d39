"""Conformance contract, part 2: the server, databases, ``_all_docs``, the bulk endpoints,
``_changes`` and ``_purge``, as Apache CouchDB 3.5.2 answers (measured). Subclassed per
backend like part 1 (couchdb_documents.py)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from contracts.couchdb_calls import POUCHDB, by_server, call, doc_path, one_shard_database, replicated
from support import unique_name

from data_service.couchdb.transport import path

HEX32 = re.compile(r"^[0-9a-f]{32}$")


class FeedsContract:
    @pytest.fixture
    async def kind(self, couch) -> str:
        return (await couch.server_info()).kind

    # -- the server and databases -----------------------------------------------------

    async def test_server_endpoints(self, couch, kind):
        welcome = await call(couch, "GET", "/")
        assert welcome.status == 200 and welcome.body["version"]
        assert ("couchdb" in welcome.body) == by_server(kind, True, pouchdb=False)
        up = await call(couch, "GET", "/_up")
        assert (up.status, up.body.get("status")) == by_server(kind, (200, "ok"), pouchdb=(404, None))
        ids = await couch.uuids(5)
        assert len(set(ids)) == 5
        assert all(HEX32.match(i) for i in ids) == by_server(kind, True, pouchdb=False)  # dev server: v4, hyphens
        prefixes = {i[:26] for i in ids}  # sequential, CouchDB's default: a shared prefix, a growing suffix
        assert (len(prefixes) == 1 and ids == sorted(ids)) == by_server(kind, True, pouchdb=False)
        too_many = await call(couch, "GET", "/_uuids", params={"count": 1001})
        assert too_many.status == by_server(kind, 400, pouchdb=403)

    async def test_database_create_info_delete(self, couch, kind):
        name = unique_name()
        assert (await call(couch, "PUT", path(name))).status == 201
        again = await call(couch, "PUT", path(name))
        assert (again.status, again.body["error"]) == (412, "file_exists")
        db = couch.database(name)
        await db.put({"_id": "a"})
        await db.delete("b", (await db.put({"_id": "b"})).rev)
        info = await db.info()
        assert (info["db_name"], info["doc_count"]) == (name, 1)  # before the POST below
        assert info.get("doc_del_count") == by_server(kind, 1, pouchdb=None)  # dev server: no such count
        assert isinstance(info["update_seq"], str) == by_server(kind, True, pouchdb=False)  # dev server: integers
        assert info.get("cluster", {}).get("n") == by_server(kind, 1, pouchdb=None)
        head = await call(couch, "HEAD", path(name))
        assert (head.status, head.body) == (200, None)
        created = await call(couch, "POST", path(name), json={"v": 1})
        assert created.status == 201 and created.body["ok"] is True and created.body["rev"].startswith("1-")
        assert (await db.get(created.body["id"]))["v"] == 1
        assert (await call(couch, "DELETE", path(name))).status == 200
        missing = await call(couch, "GET", path(name))
        reason = by_server(kind, "Database does not exist.", pouchdb="no_db_file")
        assert (missing.status, missing.body) == (404, {"error": "not_found", "reason": reason})
        assert (await call(couch, "DELETE", path(name))).status == by_server(kind, 404, pouchdb=200)
        illegal = await call(couch, "PUT", path("Bad_" + name))
        assert illegal.status == by_server(kind, 400, pouchdb=201)  # dev server: any name
        if kind == POUCHDB:
            await call(couch, "DELETE", path("Bad_" + name))
        else:
            assert illegal.body["error"] == "illegal_database_name"

    async def test_security_round_trip(self, db, kind):
        default = {"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}}
        assert await db.security() == by_server(kind, default, pouchdb={})
        wanted = {"admins": {"names": [], "roles": ["_admin"]}, "members": {"names": ["svc"], "roles": ["ds"]}}
        await db.put_security(wanted)
        assert await db.security() == wanted

    # -- _all_docs ----------------------------------------------------------------------

    async def test_all_docs_ranges_in_raw_order(self, db, kind):
        for docid in ("b", "B", "a", "é", "_design/d", "c"):
            await db.put({"_id": docid})
        await db.delete("c", (await db.get("c"))["_rev"])
        rows = (await db.all_docs()).rows
        assert [r["id"] for r in rows] == ["B", "_design/d", "a", "b", "é"]  # code points, deleted left out
        result = await db.all_docs(startkey="a", limit=2)
        assert [r["key"] for r in result.rows] == ["a", "b"] and result.total_rows == 5
        assert result.offset == by_server(kind, 2, pouchdb=0)  # dev server: always 0
        result = await db.all_docs(startkey="b", descending=True)
        assert [r["id"] for r in result.rows] == ["b", "a", "_design/d", "B"]
        assert result.offset == by_server(kind, 1, pouchdb=0)
        assert [r["id"] for r in (await db.all_docs(endkey="b", inclusive_end=False)).rows] == ["B", "_design/d", "a"]
        assert [r["id"] for r in (await db.all_docs(key="a")).rows] == ["a"]
        assert [r["id"] for r in (await db.all_docs(skip=1, limit=1)).rows] == ["_design/d"]
        assert [r["id"] for r in (await db.all_docs(startkey="_design/", endkey="_design0")).rows] == ["_design/d"]
        assert (await db.all_docs(startkey="z", endkey="a")).rows == []
        bad = await call(db.couch, "GET", f"/{db.name}/_all_docs", params={"limit": -1})
        assert bad.status == by_server(kind, 400, pouchdb=200)

    async def test_all_docs_from_an_id_with_many_digits(self, db):
        # 16 digits or more in a row: a document id like any other (CouchDB's ids are hex)
        ids = ["1234567890123456789a", "1234567890123456789b", "1234567890123456789c"]
        for docid in ids:
            await db.put({"_id": docid})
        assert [r["id"] for r in (await db.all_docs(startkey=ids[1])).rows] == ids[1:]
        assert [r["id"] for r in (await db.all_docs(key=ids[0])).rows] == ids[:1]
        assert [r["id"] for r in (await db.all_docs(keys=ids[::-1])).rows] == ids[::-1]  # a POST body

    async def test_all_docs_by_keys(self, db, kind):
        live = await db.put({"_id": "live", "v": 1})
        gone = await db.delete("gone", (await db.put({"_id": "gone"})).rev)
        result = await db.all_docs(keys=["live", "gone", "nope", "live"], include_docs=True)
        assert result.rows == [
            {"id": "live", "key": "live", "value": {"rev": live.rev}, "doc": {"_id": "live", "_rev": live.rev, "v": 1}},
            {"id": "gone", "key": "gone", "value": {"rev": gone.rev, "deleted": True}, "doc": None},
            {"key": "nope", "error": "not_found"},
            {"id": "live", "key": "live", "value": {"rev": live.rev}, "doc": {"_id": "live", "_rev": live.rev, "v": 1}},
        ]
        assert result.offset == by_server(kind, None, pouchdb=0)
        await db.bulk_docs(
            [{"_id": "c", "_rev": "1-aaaa"}, replicated("c", "2-bbbb", ["bbbb", "aaaa"])], new_edits=False
        )
        await db.bulk_docs([replicated("c", "2-cccc", ["cccc", "aaaa"])], new_edits=False)
        [row] = (await db.all_docs(keys=["c"], include_docs=True, conflicts=True)).rows
        assert row["doc"] == {"_id": "c", "_rev": "2-cccc", "_conflicts": ["2-bbbb"]}

    # -- the bulk endpoints -----------------------------------------------------------------

    async def test_bulk_docs_answers_per_document(self, db, kind):
        existing = await db.put({"_id": "e", "v": 1})
        conflict = {
            "error": "conflict",
            "reason": by_server(kind, "Document update conflict.", pouchdb="Document update conflict"),
        }
        results = await db.bulk_docs([{"_id": "e", "v": 2}, {"_id": "n", "v": 1}, {"v": "no id"}])
        assert results[0] == {"id": "e", **conflict}
        assert results[1]["ok"] is True and results[1]["rev"].startswith("1-")
        assert results[2]["ok"] is True and results[2]["id"] not in ("e", "n")
        twice = await db.bulk_docs([{"_id": "t", "v": 1}, {"_id": "t", "v": 2}])
        assert twice[0]["ok"] is True and twice[1] == {"id": "t", **conflict}
        stale = await db.bulk_docs([{"_id": "e", "_rev": "1-0000", "v": 3}, {"_id": "e", "_rev": existing.rev, "v": 3}])
        assert stale[0] == {"id": "e", **conflict} and stale[1]["rev"].startswith("2-")
        refusals = [
            ({"_id": "_bad"}, by_server(kind, (400, "illegal_docid"), pouchdb=(400, "bad_request"))),
            ({"_id": "x", "_foo": 1}, (by_server(kind, 400, pouchdb=500), "doc_validation")),
        ]
        for doc, refusal in refusals:  # one bad document refuses them all
            refused = await call(db.couch, "POST", f"/{db.name}/_bulk_docs", json={"docs": [{"_id": "fine"}, doc]})
            assert (refused.status, refused.body["error"]) == refusal
        assert await db.revision("fine") is None
        assert (await call(db.couch, "POST", f"/{db.name}/_bulk_docs", json={"nodocs": []})).status == 400

    async def test_bulk_get(self, db, kind):
        first = await db.put({"_id": "a", "n": 1})
        await db.put({"_id": "a", "_rev": first.rev, "n": 2})
        await db.put({"_id": "b", "_rev": (await db.put({"_id": "b", "n": 1})).rev, "n": 2})
        gone = await db.delete("g", (await db.put({"_id": "g"})).rev)
        results = await db.bulk_get(
            [{"id": "a", "rev": first.rev}, {"id": "b"}, {"id": "g"}, {"id": "nope"}], revs=True
        )
        assert [r["id"] for r in results] == ["a", "b", "g", "nope"]
        old, current, tombstone, missing = (r["docs"][0] for r in results)
        assert old["ok"]["n"] == 1 and old["ok"]["_revisions"]["start"] == 1
        assert current["ok"]["n"] == 2 and current["ok"]["_revisions"]["start"] == 2
        twice = await db.bulk_get([{"id": "a", "rev": first.rev}, {"id": "a"}])
        assert len(twice) == by_server(kind, 2, pouchdb=1)  # dev server: one answer per id
        shown = tombstone.get("ok") or {}
        assert (shown.get("_rev"), shown.get("_deleted")) == by_server(kind, (gone.rev, True), pouchdb=(None, None))
        assert tombstone == by_server(kind, tombstone, pouchdb={})  # dev server: nothing for a deleted winner
        assert "ok" not in missing
        error = missing.get("error", {})
        assert (error.get("error"), error.get("reason")) == by_server(
            kind, ("not_found", "missing"), pouchdb=(None, None)
        )

    async def test_long_runs_of_digits_inside_strings_are_plain_strings(self, db):
        """An id from ``_uuids`` is 32 hex digits: now and then 16 or more of them in a row
        (about one id in a hundred), as in a revision hash. Every request naming one works."""
        docid, digits = "0123456789012345678901234567890a", "12345678901234567890"
        rev = (await db.put({"_id": docid, "n": digits})).rev
        [item] = await db.bulk_get([{"id": docid, "rev": rev}])
        assert item["docs"][0]["ok"]["n"] == digits
        assert [row["key"] for row in (await db.all_docs(keys=[docid, digits])).rows] == [docid, digits]
        [saved] = await db.bulk_docs([{"_id": docid, "_rev": rev, "n": digits * 2}])
        assert saved["ok"] and (await db.open_revs(docid, [saved["rev"]]))[0]["ok"]["n"] == digits * 2

    # -- _changes -----------------------------------------------------------------------------

    async def test_changes_since_limit_and_positions(self, couch, kind):
        async with one_shard_database(couch) as db:  # one shard: the feed in the order of the writes
            for docid in ("a", "b", "c"):
                await db.put({"_id": docid})
            await db.put({"_id": "a", "_rev": (await db.get("a"))["_rev"], "v": 2})
            everything = await db.changes()
            assert [r["id"] for r in everything["results"]] == ["b", "c", "a"]  # one entry per document, its latest
            assert all(isinstance(r["seq"], str) for r in everything["results"]) == by_server(kind, True, pouchdb=False)
            first = await db.changes(limit=1)
            assert [r["id"] for r in first["results"]] == ["b"] and first["last_seq"] == first["results"][0]["seq"]
            assert first.get("pending") == by_server(kind, 2, pouchdb=None)  # dev server: no pending count
            rest = await db.changes(since=first["last_seq"])
            assert [r["id"] for r in rest["results"]] == ["c", "a"] and rest["last_seq"] == everything["last_seq"]
            now = await db.changes(since="now")
            assert now["results"] == [] and now["last_seq"] == everything["last_seq"]
            malformed = await call(db.couch, "GET", f"/{db.name}/_changes", params={"since": "3-x"})
            assert malformed.status == by_server(kind, 400, pouchdb=200)

    async def test_changes_with_documents_and_filters(self, couch):
        async with one_shard_database(couch) as db:
            await db.put({"_id": "a", "v": 1})
            await db.put({"_id": "b", "v": 1})
            await db.delete("a", (await db.get("a"))["_rev"])
            results = (await db.changes(include_docs=True))["results"]
            assert [(r["id"], r.get("deleted", False)) for r in results] == [("b", False), ("a", True)]
            assert results[1]["doc"]["_deleted"] is True and results[0]["doc"]["v"] == 1
            ids = await call(db.couch, "GET", f"/{db.name}/_changes", params={"filter": "_doc_ids", "doc_ids": '["a"]'})
            assert [r["id"] for r in ids.body["results"]] == ["a"]
            posted = await call(
                db.couch, "POST", f"/{db.name}/_changes", params={"filter": "_doc_ids"}, json={"doc_ids": ["b"]}
            )
            assert [r["id"] for r in posted.body["results"]] == ["b"]

    async def test_longpoll_waits_for_a_change_or_the_timeout(self, db):
        await db.put({"_id": "x"})
        since = (await db.changes())["last_seq"]
        started = time.monotonic()
        quiet = await db.changes(feed="longpoll", since=since, timeout=0.3)
        assert quiet["results"] == [] and time.monotonic() - started >= 0.3
        waiter = asyncio.ensure_future(db.changes(feed="longpoll", since=since, timeout=30))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await db.put({"_id": "y"})
        woke = await asyncio.wait_for(waiter, 15)
        assert [r["id"] for r in woke["results"]] == ["y"]

    # -- _purge -------------------------------------------------------------------------------

    async def test_purge_removes_leaves_and_their_trace(self, db, kind):
        rev = (await db.put({"_id": "p", "v": 1})).rev
        await db.bulk_docs(
            [{"_id": "c", "_rev": "1-aaaa"}, replicated("c", "2-bbbb", ["bbbb", "aaaa"])], new_edits=False
        )
        await db.bulk_docs([replicated("c", "2-cccc", ["cccc", "aaaa"])], new_edits=False)
        purge = f"/{db.name}/_purge"
        answer = await call(
            db.couch, "POST", purge, json={"p": [rev, "9-zz"], "c": ["2-cccc", "1-aaaa"], "none": ["1-a"]}
        )
        assert answer.status == by_server(kind, 201, pouchdb=400)  # dev server: no _purge
        if kind == POUCHDB:
            return
        assert answer.body["purged"] == {"p": [rev], "c": ["2-cccc"], "none": []}
        assert (await call(db.couch, "GET", doc_path(db, "p"), params={"open_revs": "all"})).status == 404
        assert await db.revision("p") is None and await db.get("c", conflicts=True) == {"_id": "c", "_rev": "2-bbbb"}
        assert [r["id"] for r in (await db.changes())["results"]] == ["c"]
        assert (await db.info())["doc_count"] == 1

    async def test_an_old_body_made_winner_leaves_a_trace_until_purged(self, db, kind):
        """DESIGN-NOTES section 7: a new branch at an old generation plus one DELETE of the
        newer leaf makes an old body the winner; the deleted leaf of a higher generation
        than the winner is the trace, and only a purge removes it. What one copy answers
        right after each step (on a cluster the same attack is tried end to end, waiting
        for every copy: tests/server/test_rollback.py)."""
        rev1 = (await db.put({"_id": "d", "v": "old"})).rev
        rev2 = (await db.put({"_id": "d", "_rev": rev1, "v": "new"})).rev
        forged = "2-" + "0" * 32  # the least hash: the branch loses while the newer leaf is live
        await db.bulk_docs([replicated("d", forged, [forged[2:], rev1[2:]], v="old")], new_edits=False)
        assert (await db.get("d", conflicts=True))["_conflicts"] == [forged]
        tombstone = (await db.delete("d", rev2)).rev
        read = await call(db.couch, "GET", doc_path(db, "d"), params={"deleted_conflicts": True})
        assert read.body["_rev"] == forged and read.body["v"] == "old"
        assert read.body.get("_deleted_conflicts") == by_server(kind, [tombstone], pouchdb=None)
        [change] = (await db.changes(style="all_docs"))["results"]
        assert [c["rev"] for c in change["changes"]] == by_server(
            kind, [forged, tombstone], pouchdb=[tombstone, forged]
        )
        if kind == POUCHDB:  # no _purge
            return
        await call(db.couch, "POST", f"/{db.name}/_purge", json={"d": [tombstone]})
        read = await call(db.couch, "GET", doc_path(db, "d"), params={"deleted_conflicts": True})
        assert read.body == {"_id": "d", "_rev": forged, "v": "old"}
        [change] = (await db.changes(style="all_docs"))["results"]
        assert [c["rev"] for c in change["changes"]] == [forged]
