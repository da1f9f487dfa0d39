"""Conformance contract, part 1: documents and their revision trees, as Apache CouchDB 3.5.2
answers (measured). Subclassed per backend: tests/unit (the in-memory CouchDB) and
tests/server (the dev server, or the CouchDB in $COUCHDB_URL). Where the dev server
differs, ``by_server`` states its deviation (listed in docs/testing.md)."""

from __future__ import annotations

import pytest
from contracts.couchdb_calls import POUCHDB, by_server, call, doc_path, one_shard_database, replicated

from data_service.couchdb import Request, Unreadable

CONFLICT = {"error": "conflict", "reason": "Document update conflict."}
DEV_CONFLICT = {"error": "conflict", "reason": "Document update conflict"}  # no full stop


class DocumentsContract:
    @pytest.fixture
    async def kind(self, couch) -> str:
        return (await couch.server_info()).kind

    async def test_write_read_delete_with_revisions(self, db, kind):
        created = await call(db.couch, "PUT", doc_path(db, "d1"), json={"a": 1})
        rev1 = created.body["rev"]
        assert created.status == 201 and created.body == {"ok": True, "id": "d1", "rev": rev1}
        assert rev1.startswith("1-") and len(rev1) == 34 and created.etag == f'"{rev1}"'
        read = await call(db.couch, "GET", doc_path(db, "d1"))
        assert read.status == 200 and read.body == {"_id": "d1", "_rev": rev1, "a": 1}
        assert read.etag == by_server(kind, f'"{rev1}"', pouchdb=read.etag)  # dev server: a digest of the body

        rev2 = (await call(db.couch, "PUT", doc_path(db, "d1"), json={"_rev": rev1, "a": 2})).body["rev"]
        assert rev2.startswith("2-")
        for stale in ({"_rev": rev1, "a": 3}, {"a": 3}):  # a stale revision, or none on a live document
            refused = await call(db.couch, "PUT", doc_path(db, "d1"), json=stale)
            assert (refused.status, refused.body) == (409, by_server(kind, CONFLICT, pouchdb=DEV_CONFLICT))
        assert (await call(db.couch, "DELETE", doc_path(db, "d1"), params={"rev": rev1})).status == 409

        deleted = await call(db.couch, "DELETE", doc_path(db, "d1"), params={"rev": rev2})
        assert deleted.status == 200 and deleted.body["rev"].startswith("3-")
        gone = await call(db.couch, "GET", doc_path(db, "d1"))
        assert (gone.status, gone.body["reason"]) == (404, by_server(kind, "deleted", pouchdb="missing"))
        never = await call(db.couch, "GET", doc_path(db, "nope"))
        assert (never.status, never.body) == (404, {"error": "not_found", "reason": "missing"})
        assert (await call(db.couch, "DELETE", doc_path(db, "nope"), params={"rev": rev1})).status == 404

    async def test_delete_without_a_revision(self, db, kind):
        rev = (await db.put({"_id": "d", "v": 1})).rev
        answer = await call(db.couch, "DELETE", doc_path(db, "d"))
        assert answer.status == by_server(kind, 409, pouchdb=200)  # dev server: deletes the winner
        assert await db.revision("d") == by_server(kind, (rev, False), pouchdb=(answer.body.get("rev"), True))

    async def test_the_same_edit_of_the_same_revision_makes_the_same_revision(self, couch, db, kind):
        other = couch.database(db.name + "_twin")
        await other.create()
        try:
            one, twin = (
                await db.put({"_id": "one", "v": 1, "w": [1, 2]}),
                await other.put({"_id": "one", "v": 1, "w": [1, 2]}),
            )
            assert one.rev == twin.rev
            edits = [{"_id": "one", "_rev": one.rev, "v": 2}, {"_id": "one", "_rev": twin.rev, "v": 2}]
            assert (await db.put(edits[0])).rev == (await other.put(edits[1])).rev
        finally:
            await other.drop()
        two = await db.put({"_id": "two", "v": 1, "w": [1, 2]})
        assert (two.rev == one.rev) == by_server(kind, True, pouchdb=False)  # dev server: the id is hashed too
        assert (await db.put({"_id": "three", "v": 2})).rev != one.rev

    async def test_if_match_names_the_revision(self, db, kind):
        rev1 = (await db.put({"_id": "d", "v": 1})).rev
        plain = await call(db.couch, "PUT", doc_path(db, "d"), json={"v": 2}, headers={"If-Match": rev1})
        assert plain.status == by_server(kind, 201, pouchdb=409)  # dev server: ignores If-Match
        if kind == POUCHDB:
            return
        quoted = await call(
            db.couch, "PUT", doc_path(db, "d"), json={"v": 3}, headers={"If-Match": f'"{plain.body["rev"]}"'}
        )
        assert quoted.status == 201
        stale = await call(db.couch, "PUT", doc_path(db, "d"), json={"v": 4}, headers={"If-Match": f'"{rev1}"'})
        assert (stale.status, stale.body) == (409, CONFLICT)
        current = quoted.body["rev"]
        disagreeing = await call(db.couch, "PUT", doc_path(db, "d"), json={"_rev": current}, headers={"If-Match": rev1})
        assert (disagreeing.status, disagreeing.body["reason"]) == (400, "Document rev and etag have different values")
        query = await call(db.couch, "PUT", doc_path(db, "d"), params={"rev": rev1}, json={"_rev": current})
        reason = "Document rev from request body and query string have different values"
        assert (query.status, query.body["reason"]) == (400, reason)
        deleted = await call(db.couch, "DELETE", doc_path(db, "d"), headers={"If-Match": current})
        assert deleted.status == 200 and deleted.body["rev"].startswith("4-")

    async def test_if_none_match_answers_304(self, db, kind):
        rev = (await db.put({"_id": "d", "v": 1})).rev
        for header, status in ((f'"{rev}"', 304), (f'W/"{rev}"', 304), (rev, 200), ('"1-other"', 200)):
            answer = await call(db.couch, "GET", doc_path(db, "d"), headers={"If-None-Match": header})
            assert answer.status == by_server(kind, status, pouchdb=200), header  # dev server: ETag is no rev
        with_meta = await call(db.couch, "GET", doc_path(db, "d"), params={"revs_info": True})
        assert with_meta.status == 200 and with_meta.etag == by_server(kind, None, pouchdb=with_meta.etag)

    async def test_a_write_without_revision_continues_a_tombstone(self, db, kind):
        rev1 = (await db.put({"_id": "d", "v": 1})).rev
        rev2 = (await db.delete("d", rev1)).rev
        again = await call(db.couch, "PUT", doc_path(db, "d"), json={"v": "back"})
        assert again.status == 201 and again.body["rev"].startswith("3-")
        doc = await db.get("d", revs=True)
        assert doc["v"] == "back" and doc["_revisions"]["ids"][1:] == [rev2[2:], rev1[2:]]
        rev4 = (await db.delete("d", doc["_rev"])).rev
        tombstone = await call(db.couch, "PUT", doc_path(db, "d"), json={"_deleted": True})
        assert tombstone.status == by_server(kind, 409, pouchdb=tombstone.status)
        again = await call(db.couch, "DELETE", doc_path(db, "d"), params={"rev": rev4})
        assert again.status == by_server(kind, 404, pouchdb=200)  # dev server: one more tombstone

    async def test_a_tombstone_can_carry_a_body(self, db, kind):
        written = await call(db.couch, "PUT", doc_path(db, "t"), json={"_deleted": True, "kept": "yes"})
        assert written.status == by_server(kind, 200, pouchdb=201) and written.body["rev"].startswith("1-")
        rev = written.body["rev"]
        assert (await call(db.couch, "GET", doc_path(db, "t"))).status == 404
        assert await db.get("t", rev=rev) == {"_id": "t", "_rev": rev, "kept": "yes", "_deleted": True}
        assert await db.open_revs("t") == [{"ok": {"_id": "t", "_rev": rev, "kept": "yes", "_deleted": True}}]
        [change] = (await db.changes(include_docs=True))["results"]
        assert change["deleted"] is True and change["doc"]["kept"] == "yes"

    async def test_old_revisions_and_revision_options(self, db, kind):
        rev1 = (await db.put({"_id": "d", "v": 1})).rev
        rev2 = (await db.put({"_id": "d", "_rev": rev1, "v": 2})).rev
        assert await db.get("d", rev=rev1) == {"_id": "d", "_rev": rev1, "v": 1}  # a non-leaf, until compaction
        assert (await db.get("d", rev=rev1, revs=True))["_revisions"] == {"start": 1, "ids": [rev1[2:]]}
        assert (await call(db.couch, "GET", doc_path(db, "d"), params={"rev": "1-deadbeef"})).status == 404
        junk = await call(db.couch, "GET", doc_path(db, "d"), params={"rev": "junk"})
        assert junk.status == by_server(kind, 400, pouchdb=404)
        info = (await call(db.couch, "GET", doc_path(db, "d"), params={"revs_info": True, "revs": True})).body
        assert info["_revisions"] == {"start": 2, "ids": [rev2[2:], rev1[2:]]}
        assert info["_revs_info"] == [{"rev": rev2, "status": "available"}, {"rev": rev1, "status": "available"}]

    async def test_the_winner_and_the_other_leaves(self, db, kind):
        docs = [{"_id": "c", "_rev": "1-aaaa", "v": 0}]
        docs += [replicated("c", f"2-{h}", [h, "aaaa"], v=h) for h in ("bbbb", "cccc", "0000")]
        docs += [replicated("c", "3-dddd", ["dddd", "xxxx", "aaaa"], v="3d")]
        docs += [replicated("c", "4-dead", ["dead", "zzzz", "wwww", "aaaa"], _deleted=True)]
        docs += [replicated("c", "2-dea0", ["dea0", "aaaa"], _deleted=True)]
        assert await db.bulk_docs(docs, new_edits=False) == []
        read = await call(db.couch, "GET", doc_path(db, "c"), params={"conflicts": True, "deleted_conflicts": True})
        live = ["2-cccc", "2-bbbb", "2-0000"]  # highest generation, then greatest hash, first
        assert read.body == {
            "_id": "c",
            "_rev": "3-dddd",  # live leaves before deleted ones, then as above
            "v": "3d",
            "_conflicts": by_server(kind, live, pouchdb=live[::-1]),
            **by_server(kind, {"_deleted_conflicts": ["4-dead", "2-dea0"]}, pouchdb={}),  # dev server: not supported
        }
        assert read.etag == by_server(kind, None, pouchdb=read.etag)  # an answer with _conflicts has no ETag
        leaves = [leaf["ok"]["_rev"] for leaf in await db.open_revs("c")]
        by_revision = ["2-0000", "2-bbbb", "2-cccc", "2-dea0", "3-dddd", "4-dead"]
        by_generation = ["4-dead", "3-dddd", "2-0000", "2-bbbb", "2-cccc", "2-dea0"]
        assert leaves == by_server(kind, by_revision, pouchdb=by_generation)
        [change] = (await db.changes(style="all_docs"))["results"]
        ranked = ["3-dddd", *live, "4-dead", "2-dea0"]  # the winner first, as _conflicts ranks them
        assert [c["rev"] for c in change["changes"]] == by_server(kind, ranked, pouchdb=by_generation)

    async def test_bulk_get_without_a_revision_gives_every_leaf(self, db, kind):
        docs = [{"_id": "c", "_rev": "1-aaaa", "v": 0}, replicated("c", "2-bbbb", ["bbbb", "aaaa"], v="b")]
        docs += [replicated("c", "2-cccc", ["cccc", "aaaa"], v="c")]
        docs += [replicated("c", "3-dddd", ["dddd", "eeee", "aaaa"], _deleted=True)]
        await db.bulk_docs(docs, new_edits=False)
        [result] = await db.bulk_get([{"id": "c"}])
        every = [{"ok": {"_id": "c", "_rev": "2-bbbb", "v": "b"}}, {"ok": {"_id": "c", "_rev": "2-cccc", "v": "c"}}]
        every += [{"ok": {"_id": "c", "_rev": "3-dddd", "_deleted": True}}]
        assert result["docs"] == by_server(kind, every, pouchdb=[every[1]])  # dev server: the winner only

    async def test_open_revs_asked_by_revision(self, db, kind):
        docs = [{"_id": "c", "_rev": "1-aaaa", "v": 0}, replicated("c", "2-bbbb", ["bbbb", "aaaa"], v="b")]
        docs.append(replicated("c", "3-dddd", ["dddd", "eeee", "aaaa"], _deleted=True, v="gone"))
        await db.bulk_docs(docs, new_edits=False)
        one, two, three = (
            {"ok": {"_id": "c", "_rev": "1-aaaa", "v": 0}},
            {"ok": {"_id": "c", "_rev": "2-bbbb", "v": "b"}},
            {"ok": {"_id": "c", "_rev": "3-dddd", "v": "gone", "_deleted": True}},
        )
        asked = await db.open_revs("c", ["2-bbbb", "3-dddd", "1-aaaa", "2-eeee", "9-zzzz", "2-bbbb"])
        missing = [{"missing": "2-eeee"}, {"missing": "9-zzzz"}]  # 2-eeee: known only from a history, no body
        assert asked == by_server(kind, [one, two, three], pouchdb=[two, three, one]) + missing  # dev server: as asked
        [leaf] = (await call(db.couch, "GET", doc_path(db, "c"), params={"open_revs": '["2-bbbb"]', "revs": True})).body
        assert leaf["ok"]["_revisions"] == {"start": 2, "ids": ["bbbb", "aaaa"]}
        assert await db.open_revs("never", ["1-a"]) == [{"missing": "1-a"}]
        assert (await call(db.couch, "GET", doc_path(db, "never"), params={"open_revs": "all"})).status == 404

    async def test_resolving_a_conflict_in_one_bulk_write(self, db, kind):
        docs = [{"_id": "c1", "_rev": "1-aaaa", "v": 0}, replicated("c1", "2-bbbb", ["bbbb", "aaaa"], v="left")]
        await db.bulk_docs([*docs, replicated("c1", "2-cccc", ["cccc", "aaaa"], v="right")], new_edits=False)
        assert (await db.get("c1", conflicts=True))["_conflicts"] == ["2-bbbb"]
        merged, loser = (
            {"_id": "c1", "_rev": "2-cccc", "v": "merged"},
            {"_id": "c1", "_rev": "2-bbbb", "_deleted": True},
        )
        results = await db.bulk_docs([merged, loser])
        assert [r["ok"] for r in results] == [True, True] and [r["rev"][:2] for r in results] == ["3-", "3-"]
        resolved = await call(
            db.couch, "GET", doc_path(db, "c1"), params={"conflicts": True, "deleted_conflicts": True}
        )
        assert resolved.body["v"] == "merged" and "_conflicts" not in resolved.body
        assert resolved.body.get("_deleted_conflicts") == by_server(kind, [results[1]["rev"]], pouchdb=None)

    async def test_replicated_revisions_merge_into_the_tree(self, db, kind):
        await db.bulk_docs([replicated("c", "3-cccc", ["cccc", "bbbb", "aaaa"], v="c")], new_edits=False)
        again = await db.bulk_docs([{"_id": "c", "_rev": "3-cccc", "v": "other"}], new_edits=False)
        assert again == [] and (await db.get("c"))["v"] == "c"  # a revision held is kept as it is
        await db.bulk_docs([replicated("c", "2-bbbb", ["bbbb", "aaaa"], v="filled")], new_edits=False)
        filled = await call(db.couch, "GET", doc_path(db, "c"), params={"rev": "2-bbbb"})
        assert filled.status == by_server(kind, 200, pouchdb=404)  # dev server: a missing body stays missing
        await db.bulk_docs([{"_id": "r", "_rev": "5-ffff", "v": 5}], new_edits=False)  # a root after a gap
        assert (await db.get("r", revs=True))["_revisions"] == {"start": 5, "ids": ["ffff"]}
        put = await call(
            db.couch, "PUT", doc_path(db, "p"), params={"new_edits": False}, json={"_rev": "1-abc", "v": 1}
        )
        assert (put.status, put.body) == (201, by_server(kind, {"ok": True, "id": "p", "rev": "1-abc"}, pouchdb=[]))
        assert (await db.get("p"))["_rev"] == "1-abc"
        refused = await call(
            db.couch, "POST", f"/{db.name}/_bulk_docs", json={"new_edits": False, "docs": [{"_id": "x"}]}
        )
        assert refused.status == 400

    async def test_a_revision_for_a_document_never_written(self, couch, kind):
        async with one_shard_database(couch) as db:
            first = await call(couch, "PUT", doc_path(db, "x"), json={"_rev": "1-zz"})
            assert first.status == 409  # on a shard never written to
            await db.put({"_id": "a"})
            later = await call(couch, "PUT", doc_path(db, "y"), json={"_rev": "1-zz", "v": 1})
            assert later.status == by_server(kind, 201, pouchdb=409)  # CouchDB: a child of a missing parent
            if later.status == 201:
                info = (await call(couch, "GET", doc_path(db, "y"), params={"revs_info": True})).body["_revs_info"]
                assert [(i["rev"][:2], i["status"]) for i in info] == [("2-", "available"), ("1-", "missing")]
            assert (await call(couch, "PUT", doc_path(db, "_design/q"), json={"_rev": "1-zz"})).status == 409

    async def test_what_a_document_may_hold(self, db, kind):
        special = await call(db.couch, "PUT", doc_path(db, "d"), json={"x": 1, "_foo": 1})
        assert (special.status, special.body["error"]) == (by_server(kind, 400, pouchdb=500), "doc_validation")
        reserved = await call(db.couch, "PUT", doc_path(db, "_bad"), json={})
        assert (reserved.status, reserved.body["error"]) == (
            400,
            by_server(kind, "illegal_docid", pouchdb="bad_request"),
        )
        assert (await call(db.couch, "PUT", doc_path(db, "d"), json=[1, 2])).status == 400
        ignored = {"x": 1, "_conflicts": ["1-a"], "_deleted_conflicts": [], "_revs_info": [], "_local_seq": 1}
        accepted = await call(db.couch, "PUT", doc_path(db, "d"), json=ignored)
        assert accepted.status == 201 and await db.get("d") == {"_id": "d", "_rev": accepted.body["rev"], "x": 1}
        elsewhere = await call(db.couch, "PUT", doc_path(db, "e"), json={"_id": "other", "v": 1})
        assert elsewhere.body["id"] == by_server(kind, "e", pouchdb="other")  # CouchDB: the path names the document

    async def test_local_documents_have_no_revision_check(self, db, kind):
        first = await call(db.couch, "PUT", doc_path(db, "_local/x"), json={"v": 1})
        assert (first.status, first.body["rev"]) == (201, "0-1")
        second = await call(db.couch, "PUT", doc_path(db, "_local/x"), json={"v": 2})
        assert second.status == by_server(kind, 201, pouchdb=409)  # DESIGN-NOTES section 7
        assert second.body.get("rev") == by_server(kind, "0-1", pouchdb=None)
        numbered = await call(db.couch, "PUT", doc_path(db, "_local/x"), json={"v": 3, "_rev": "0-7"})
        assert numbered.status == by_server(kind, 201, pouchdb=409)
        assert numbered.body.get("rev") == by_server(kind, "0-8", pouchdb=None)
        read = await call(db.couch, "GET", doc_path(db, "_local/x"))
        assert read.body == {
            "_id": "_local/x",
            "_rev": by_server(kind, "0-8", pouchdb="0-1"),
            "v": by_server(kind, 3, pouchdb=1),
        }
        deleted = await call(db.couch, "DELETE", doc_path(db, "_local/x"))
        assert (deleted.status, deleted.body["rev"]) == (200, "0-0")
        assert (await call(db.couch, "GET", doc_path(db, "_local/x"))).status == 404
        assert (await db.all_docs()).rows == [] and (await db.changes())["results"] == []

    async def test_a_write_stored_below_its_quorum_is_accepted(self, db, kind):
        copies = await db.copies() or 1
        answer = await call(db.couch, "PUT", doc_path(db, "w"), params={"w": copies + 1}, json={"v": 1})
        assert answer.status == by_server(kind, 202, pouchdb=201)  # dev server: no quorum
        assert (await db.get("w"))["_rev"] == answer.body["rev"]

    async def test_revision_hashes_as_couchdb_keeps_them(self, db, kind):
        """A hash of 32 hex digits is kept as the 16 bytes it stands for (compared as bytes,
        shown in lower case); any other as its text."""
        upper, text = "2-" + "A" * 32, "2-f0f0"
        docs = [
            {"_id": "c", "_rev": "1-aaaa"},
            replicated("c", upper, ["A" * 32, "aaaa"]),
            replicated("c", text, ["f0f0", "aaaa"]),
        ]
        await db.bulk_docs(docs, new_edits=False)
        doc = await db.get("c", conflicts=True)
        lower = upper.lower()
        assert (doc["_rev"], doc["_conflicts"]) == by_server(kind, (lower, [text]), pouchdb=(text, [upper]))

    async def test_documents_a_json_parser_may_not_hold_are_kept(self, db, kind):
        """Integers beyond 64 bits and nesting beyond orjson's 1,024 levels: CouchDB keeps both."""
        deep = b'{"a":' * 1500 + b"1" + b"}" * 1500
        body = b'{"big":123456789012345678901234567890,"deep":' + deep + b"}"
        written = await db.couch.transport.handle(Request("PUT", doc_path(db, "odd"), body=body))
        assert written.status == 201
        raw = (await db.couch.transport.handle(Request("GET", doc_path(db, "odd")))).body
        assert (b"123456789012345678901234567890" in raw) == by_server(
            kind, True, pouchdb=False
        )  # dev server: a double
        assert deep in raw
        with pytest.raises(Unreadable):
            await db.get("odd")
