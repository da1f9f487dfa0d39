"""Store contract, part 4: the reconciler (``store/reconciler.py``; docs/consistency.md
§2-3) — conflicts merged by the type's policy (``latest``, ``merge``), leaves failing
their check discarded and never merged, a crash between writing the winner and removing
the losers losing nothing, racing reconcilers converging, unresolvable conflicts left
as they are; deleted leaves above the winner: the service's tombstones lifted over, a
caller's delete against an edit decided by time, anything else TAMPERED (a rollback).
Conflicts are made replication style (``new_edits: false``), as two nodes make them.
Subclassed per backend. (The sweep reads a view: tests/server.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
from contracts.store_setup import (
    FUTURE,
    MEMBER_V1,
    MEMBER_V2,
    NOTE,
    PAST,
    StoreSetup,
    created,
    edited,
    history,
    leaves,
    live_leaves,
    tombstone_on,
)
from support.conflicts import CART, PROFILE, fork

from data_service import idempotency
from data_service.envelope import Removed, strip
from data_service.lifecycle import Lifecycle
from data_service.protection import IntegrityViolation
from data_service.revisions import rev_key
from data_service.store import DocumentNotFound, Stats
from data_service.store.reconciler import Reconciler, Status


def content(doc: dict) -> dict:
    """What a document says, apart from where it is stored."""
    return {k: v for k, v in strip(doc).items() if k not in ("_rev", "sig")}


class Crash(Exception):
    pass


class StoreReconcilerContract(StoreSetup):
    @pytest.fixture
    def wa(self, ring) -> Lifecycle:
        return Lifecycle(ring, "wa")

    @pytest.fixture
    def wb(self, ring) -> Lifecycle:
        return Lifecycle(ring, "wb")

    async def test_latest_keeps_the_later_edit_and_removes_the_other(self, store, db, wa, wb):
        doc = await created(store, PROFILE, {"name": "Ann"})
        earlier, later = edited(wa, PROFILE, doc, {"city": "A"}, PAST), edited(wb, PROFILE, doc, {"city": "B"}, FUTURE)
        earlier_rev, _ = await fork(db, doc, earlier, later)
        read = await store.read(PROFILE, doc["_id"])
        assert read["city"] == "B" and content(read) == content(later)
        # written again one generation up, above the loser's tombstone (never a deleted leaf above the winner)
        [winner] = await live_leaves(db, doc["_id"])
        [loser] = [leaf for leaf in await leaves(db, doc["_id"]) if leaf.get("_deleted")]
        assert winner["_rev"] == read["_rev"] and rev_key(read["_rev"])[0] == rev_key(loser["_rev"])[0] == 3
        assert loser["meta"]["removed"] == Removed.SUPERSEDED and loser["meta"]["over"] == earlier_rev
        assert store.stats.conflicts_found == store.stats.conflicts_resolved == 1

    async def test_merge_keeps_every_side(self, store, db, wa, wb):
        doc = await created(store, CART, {"owner": "o1", "visits": 1, "items": ["x"]})
        a = edited(wa, CART, doc, {"visits": 2, "items": ["x", "a"], "title": "A"})
        b = edited(wb, CART, doc, {"visits": 4, "items": ["x", "b"]})
        await fork(db, doc, a, b)
        read = await store.read(CART, doc["_id"])
        assert read["visits"] == 5 and sorted(read["items"]) == ["a", "b", "x"] and read["title"] == "A"
        assert len(await live_leaves(db, doc["_id"])) == 1 and read["_rev"].startswith("3-")
        store.lifecycle.check_signature(await db.get(read["_id"]))

    async def test_a_tampered_leaf_is_discarded_never_merged(self, store, db, wa, wb, caplog):
        doc = await created(store, CART, {"owner": "o1", "title": "t", "items": ["x"]})
        valid = edited(wa, CART, doc, {"items": ["x", "good"]})
        tampered = {**edited(wb, CART, doc, {"title": "honest"}), "title": "Mallory"}  # not signed again
        _, bad = await fork(db, doc, valid, tampered)
        got = await store.read(CART, doc["_id"])
        assert got["title"] == "t" and got["items"] == ["x", "good"]
        after = await db.get(doc["_id"], conflicts=True)
        assert "_conflicts" not in after and after["_rev"] == got["_rev"]
        assert store.stats.conflict_leaves_discarded == 1 and store.stats.integrity_violations == 1
        assert f"revision {bad} discarded" in caplog.text and "Mallory" not in caplog.text
        assert all(leaf.get("_deleted") for leaf in await leaves(db, doc["_id"]) if leaf["_rev"] != got["_rev"])
        assert (await db.get(doc["_id"], rev=bad))["title"] == "Mallory"  # kept in history, for forensics

    async def test_an_old_body_injected_beside_the_current_one_is_discarded(self, store, db):
        cart = await store.create(CART, {"owner": "o1", "items": ["keep", "removed"]})
        old = await db.get(cart.id)
        await store.patch(CART, cart.id, {"items": ["keep"]}, None)
        current = await db.get(cart.id)
        [injected] = await fork(db, old, {k: v for k, v in old.items() if k != "_rev"})  # signed for generation 1
        read = await store.read(CART, cart.id)
        assert read["items"] == ["keep"]  # the removed item stays removed
        after = await db.get(cart.id, conflicts=True)
        # the current content, written again one generation up, above the discarded leaf's tombstone
        assert "_conflicts" not in after and after["_rev"].startswith("3-") and content(after) == content(current)
        assert [leaf["_rev"] for leaf in await live_leaves(db, cart.id)] == [after["_rev"]]
        assert (await db.get(cart.id, rev=injected))["items"] == old["items"]

    async def test_a_crash_between_winner_and_losers_loses_nothing(self, store, db, ring, wa, wb):
        doc = await created(store, CART, {"owner": "o1", "visits": 1, "items": ["x"]})
        a = edited(wa, CART, doc, {"visits": 2, "items": ["x", "a"], "title": "A"})
        b = edited(wb, CART, doc, {"visits": 4, "items": ["x", "b"]})
        await fork(db, doc, a, b)

        async def crash(written):
            raise Crash(written)

        dying = Reconciler(db, Lifecycle(ring, "w-r"), Stats(), after_winner_write=crash)
        with pytest.raises(Crash):
            await dying.reconcile([(CART, doc["_id"])])
        midway = await db.get(doc["_id"], conflicts=True)
        assert len(midway["_conflicts"]) == 1  # the winner is written, the losers still there
        assert midway["visits"] == 5 and set(midway["items"]) == {"x", "a", "b"} and midway["title"] == "A"
        [outcome] = await Reconciler(db, Lifecycle(ring, "w-r"), Stats()).reconcile([(CART, doc["_id"])])
        assert outcome.status is Status.RESOLVED
        final = await db.get(doc["_id"], conflicts=True)
        assert "_conflicts" not in final and final["_rev"] == midway["_rev"]  # only deletions
        assert content(final) == content(midway)

    async def test_racing_reconcilers_converge(self, store, db, ring, wa, wb):
        docs = []
        for i in range(4):
            doc = await created(store, CART, {"owner": f"o{i}", "visits": 0, "items": []})
            await fork(
                db,
                doc,
                edited(wa, CART, doc, {"visits": 1, "items": ["a"]}),
                edited(wb, CART, doc, {"visits": 2, "items": ["b"]}),
                edited(Lifecycle(ring, "wc"), CART, doc, {"visits": 3, "title": "c"}),
            )
            docs.append(doc["_id"])
        racers = [Reconciler(db, Lifecycle(ring, f"w-r{n}"), Stats()) for n in range(3)]
        outcomes = await asyncio.gather(
            *(r.reconcile([(CART, d) for d in docs[n:] + docs[:n]]) for n, r in enumerate(racers))
        )
        assert not [o for found in outcomes for o in found if o.status is Status.UNRESOLVABLE]
        for docid in docs:
            final = await db.get(docid, conflicts=True)
            assert "_conflicts" not in final
            assert final["visits"] == 6 and sorted(final["items"]) == ["a", "b"] and final["title"] == "c"
            ring.check_signature(final)

    async def test_an_unresolvable_conflict_is_left_as_it_is_and_reported_every_pass(self, store, db, wa, wb):
        doc = await created(store, PROFILE, {"name": "Ann"})
        revs = await fork(
            db, doc, edited(wa, PROFILE, doc, {"account": "acc-1"}), edited(wb, PROFILE, doc, {"account": "acc-2"})
        )
        got = await store.read(PROFILE, doc["_id"])  # CouchDB's winner, as it is
        assert got["_rev"] == max(revs, key=rev_key) and "_conflicts" not in got
        await store.read(PROFILE, doc["_id"])  # known: not tried (nor counted) again on reads
        assert store.stats.conflicts_unresolvable == 1 and store.stats.conflicts_resolved == 0
        for _ in range(2):
            [outcome] = await store.reconciler.reconcile([(PROFILE, doc["_id"])])
            assert outcome.status is Status.UNRESOLVABLE and "immutable property 'account' differs" in outcome.reason
        assert len((await db.get(doc["_id"], conflicts=True))["_conflicts"]) == 1

    async def test_leaves_it_cannot_judge_make_a_conflict_unresolvable(self, store, db, wa, wb, ring):
        note = await created(store, NOTE, {"title": "t"})
        await fork(db, note, edited(wa, NOTE, note, {"title": "a"}), edited(wb, NOTE, note, {"title": "b"}))
        [unknown] = await store.reconciler.reconcile([(None, note["_id"])])
        assert unknown.status is Status.UNRESOLVABLE and "not in the models file" in unknown.reason
        [wrong] = await store.reconciler.reconcile([(PROFILE, note["_id"])])
        assert wrong.status is Status.UNRESOLVABLE and "not a profile" in wrong.reason
        cart = await created(store, CART, {"owner": "o"})
        await fork(
            db,
            cart,
            {**edited(wa, CART, cart, {"title": "a"}), "title": "x"},
            {**edited(wb, CART, cart, {"title": "b"}), "title": "y"},
        )
        [none] = await store.reconciler.reconcile([(CART, cart["_id"])])
        assert none.status is Status.UNRESOLVABLE and none.reason == "no revision passes its signature check"
        [gone] = await store.reconciler.reconcile([(NOTE, "never-there")])
        assert gone.status is Status.GONE
        [clean] = await store.reconciler.reconcile([(CART, (await created(store, CART, {"owner": "p"}))["_id"])])
        assert clean.status is Status.CLEAN

    async def test_leaves_of_an_older_version_are_upgraded_before_they_merge(self, store, db, wa, wb):
        old = wa.create(MEMBER_V1, "m1", {"nick": "ann", "city": "Oslo"}, {}, PAST).doc
        await db.bulk_docs([{**old, "_rev": "1-aa", "_revisions": {"start": 1, "ids": ["aa"]}}], new_edits=False)
        base = {**old, "_rev": "1-aa"}
        upgraded = {**wb.current(MEMBER_V2, base), "_rev": "1-aa"}
        await fork(
            db,
            base,
            edited(wa, MEMBER_V1, base, {"nick": "ann-1"}),
            edited(wb, MEMBER_V2, upgraded, {"level": 3}, FUTURE),
        )
        read = await store.read(MEMBER_V2, "m1")
        assert read["type"] == "member_v2.0" and read["level"] == 3 and len(await live_leaves(db, "m1")) == 1

    async def test_two_claims_of_one_key_keep_the_highest(self, store, db, wa, wb):
        at = dt.datetime.now(dt.UTC)
        record = wa.claim(NOTE, "k", "d0", {"title": "t"}, at, 60.0, None)
        await db.bulk_docs([{**record, "_rev": "1-aa", "_revisions": {"start": 1, "ids": ["aa"]}}], new_edits=False)
        base = {**record, "_rev": "1-aa"}
        one = wa.claim(NOTE, "k", "d1", {"title": "t"}, at, 60.0, base)
        two = wb.claim(NOTE, "k", "d2", {"title": "t"}, at, 60.0, base)
        revs = await fork(db, base, one, two)
        [outcome] = await store.reconciler.reconcile([(None, record["_id"])])
        assert outcome.status is Status.RESOLVED
        kept = await db.get(record["_id"], conflicts=True)
        highest = one if max(revs, key=rev_key) == revs[0] else two
        assert "_conflicts" not in kept and idempotency.is_record(kept) and kept["doc_id"] == highest["doc_id"]

    # -- deleted leaves above the winner ------------------------------------------------

    async def two_branches(self, store, db, wa, wb, at_a=None, at_b=None) -> tuple[dict, dict]:
        """A note edited on two nodes from one revision: the leaves (a, b) as stored."""
        note = await created(store, NOTE, {"title": "t"})
        a, b = edited(wa, NOTE, note, {"title": "A"}, at_a), edited(wb, NOTE, note, {"title": "B"}, at_b)
        rev_a, rev_b = await fork(db, note, a, b)
        return {**a, "_rev": rev_a}, {**b, "_rev": rev_b}

    @pytest.mark.parametrize("removed", [Removed.WITHDRAWN, Removed.SUPERSEDED])
    async def test_the_services_tombstone_above_the_winner_is_lifted_over(self, store, db, wa, wb, removed):
        a, b = await self.two_branches(store, db, wa, wb)
        above = await tombstone_on(db, wb, b, removed)
        read = await store.read(NOTE, a["_id"])
        assert read["title"] == "A"  # the only live leaf left
        assert rev_key(read["_rev"])[0] >= rev_key(above)[0]  # written again above the tombstone
        assert content(read) == content(a)
        [outcome] = await store.reconciler.reconcile([(NOTE, a["_id"])])
        assert outcome.status is Status.CLEAN  # reads stop fetching

    async def test_an_unsigned_tombstone_above_the_winner_is_tampering(self, store, db, wa, wb):
        a, b = await self.two_branches(store, db, wa, wb)
        await tombstone_on(db, None, b, Removed.DELETE)  # a member's DELETE of the newer leaf
        before = await leaves(db, a["_id"])
        with pytest.raises(IntegrityViolation, match="not the service's"):
            await store.read(NOTE, a["_id"])
        [outcome] = await store.reconciler.reconcile([(NOTE, a["_id"])])
        assert outcome.status is Status.TAMPERED
        assert await leaves(db, a["_id"]) == before  # nothing written: an operator decides

    async def test_a_signed_tombstone_moved_onto_another_branch_is_tampering(self, store, db, wa, wb):
        a, b = await self.two_branches(store, db, wa, wb)
        signed, digest = wb.tombstone(a, Removed.DELETE), "f" * 32  # signed over a ...
        ids = await history(db, b["_id"], b["_rev"])
        moved = {**signed, "_rev": f"3-{digest}", "_revisions": {"start": 3, "ids": [digest, *ids]}}
        assert await db.bulk_docs([moved], new_edits=False) == []  # ... stored on b's branch
        with pytest.raises(IntegrityViolation, match=re.escape(f"signed for {a['_rev']}, written on {b['_rev']}")):
            await store.read(NOTE, a["_id"])

    async def test_a_callers_delete_later_than_the_edit_deletes(self, store, db, wa, wb):
        a, b = await self.two_branches(store, db, wa, wb, at_a=PAST)
        await tombstone_on(db, wb, b, Removed.DELETE, at=FUTURE)  # deleted on node b after its edit
        with pytest.raises(DocumentNotFound):
            await store.read(NOTE, a["_id"])
        assert await live_leaves(db, a["_id"]) == []  # the edit's leaf removed (signed)

    async def test_an_edit_later_than_a_callers_delete_stands(self, store, db, wa, wb):
        a, b = await self.two_branches(store, db, wa, wb, at_a=FUTURE, at_b=PAST)
        await tombstone_on(db, wb, b, Removed.DELETE, at=PAST)
        read = await store.read(NOTE, a["_id"])
        assert read["title"] == "A" and rev_key(read["_rev"])[0] == 3  # written above the tombstone
        [outcome] = await store.reconciler.reconcile([(NOTE, a["_id"])])
        assert outcome.status is Status.CLEAN

    async def test_scans_find_the_documents_with_a_deleted_leaf_above_the_winner(self, store, db, wa, wb):
        """What ``verify`` scans with (``Reads.above``, then ``Reads.leaves``): every
        document with more than one leaf is a suspect; its leaves tell."""
        a, b = await self.two_branches(store, db, wa, wb)
        plain = await created(store, NOTE, {"title": "plain"})
        await tombstone_on(db, None, b, Removed.DELETE)
        reads = store.writes.reads
        suspects = await reads.above([a["_id"], plain["_id"]])
        assert suspects == {a["_id"]} and await reads.above([]) == set()
        found = await reads.leaves(suspects)
        [above] = found[a["_id"]].above()
        assert above["_deleted"] and above["_revisions"]["start"] == 3  # with its history
        assert await reads.leaves([]) == {}
