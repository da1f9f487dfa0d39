"""Store contract, part 1: reads and writes of single documents through ``DocumentStore``
— create, create under a chosen id, replace, merge patch with and without If-Match,
delete for hard and soft types; the 412 / 428 / 404 answers; documents changed behind
the store's back (edited, rolled back, retyped) answered as integrity violations, never
served; older versions upgraded. Subclassed per backend (tests/unit, tests/server)."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from contracts.store_setup import (
    MEMBER_V1,
    MEMBER_V2,
    NOTE,
    PAST,
    USER,
    StoreSetup,
    created,
    leaves,
    live_leaves,
    new_store,
    roll_back,
)
from support.conflicts import CART, PROFILE

from data_service.couchdb import Request
from data_service.couchdb.client import path
from data_service.envelope import Removed
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle, Op
from data_service.models import MigrationFailed, ValidationFailed
from data_service.protection import IntegrityViolation, Keyring
from data_service.store import ANY_REVISION, Answer, Change, DocumentNotFound, StaleRevision
from data_service.store.errors import PreconditionRequired

ANN = {"email": "ann@example.com", "name": "Ann", "ssn": "123-45-6789", "country": "NO"}


def shown(answer) -> dict:
    return orjson.loads(answer.body)


def revs(*answers) -> frozenset[str]:
    return frozenset(answer.rev for answer in answers)


class StoreDocumentsContract(StoreSetup):
    async def test_create_replace_patch_and_a_hard_delete(self, store, db):
        first = await store.create(NOTE, {"title": "hello", "body": "first"})
        assert first.created and first.rev.startswith("1-") and first.etag == f'"{first.rev}"'
        note = shown(first)
        assert note["title"] == "hello" and note["id"] == first.id and note["meta"]["type"] == "note"
        assert (await store.read(NOTE, first.id))["type"] == "note_v1.0"

        replaced = await store.replace(NOTE, first.id, {"title": "replaced"}, revs(first))
        assert replaced.rev.startswith("2-") and not replaced.created
        assert shown(replaced)["title"] == "replaced" and "body" not in shown(replaced)
        assert shown(replaced)["meta"]["created_at"] == note["meta"]["created_at"]
        patched = await store.patch(NOTE, first.id, {"body": "b", "attributes": {"a": "1"}}, revs(replaced))
        free = await store.patch(NOTE, first.id, {"body": None, "attributes": {"b": "2"}}, None)
        assert shown(free)["attributes"] == {"a": "1", "b": "2"} and "body" not in shown(free)
        assert patched.rev.startswith("3-") and free.rev.startswith("4-")
        unchanged = await store.patch(NOTE, first.id, {}, revs(free))  # changes nothing: no new revision
        assert unchanged.rev == free.rev and shown(unchanged) == shown(free)

        deleted = await store.delete(NOTE, first.id, revs(free))
        assert deleted.deleted and deleted.rev.startswith("5-") and deleted.body == b"" and not deleted.below_quorum
        with pytest.raises(DocumentNotFound):
            await store.read(NOTE, first.id)
        [tombstone] = await leaves(db, first.id)
        assert tombstone["_deleted"] and tombstone["meta"]["removed"] == Removed.DELETE
        assert tombstone["meta"]["over"] == free.rev and tombstone["sig"]["gen"] == 5  # signed, for its place
        assert "title" not in tombstone  # nothing of the note is left

    async def test_a_soft_delete_keeps_the_document_marked(self, store, db):
        user = await store.create(USER, ANN)
        deleted = await store.delete(USER, user.id, frozenset({ANY_REVISION}))
        assert deleted.deleted and deleted.rev.startswith("2-")
        kept = await db.get(user.id)
        assert kept["meta"]["deleted_at"] and kept["ssn"].startswith("aead2:") and not kept.get("_deleted")
        for write in (
            store.read(USER, user.id),
            store.replace(USER, user.id, ANN, frozenset({ANY_REVISION})),
            store.patch(USER, user.id, {"name": "Back"}, None),
            store.delete(USER, user.id, frozenset({ANY_REVISION})),
        ):
            with pytest.raises(DocumentNotFound):
                await write
        assert (await store.writes.reader.open(USER, await store.writes.reads.one(user.id), deleted=True))["name"]

    async def test_a_write_naming_an_older_revision_is_stale_and_changes_nothing(self, store, db):
        first = await store.create(NOTE, {"title": "t"})
        second = await store.replace(NOTE, first.id, {"title": "second"}, revs(first))
        for stale in (
            store.replace(NOTE, first.id, {"title": "lost"}, revs(first)),
            store.patch(NOTE, first.id, {"title": "lost"}, revs(first)),
            store.patch(NOTE, first.id, {}, revs(first)),
            store.delete(NOTE, first.id, revs(first)),
        ):
            with pytest.raises(StaleRevision) as refused:
                await stale
            assert refused.value.rev == second.rev and refused.value.representation == shown(second)
            assert refused.value.headers() == {"ETag": second.etag}
        assert (await db.get(first.id))["_rev"] == second.rev and store.stats.stale_revisions == 4
        anyone = await store.replace(NOTE, first.id, {"title": "any"}, frozenset({ANY_REVISION}))
        either = await store.patch(NOTE, first.id, {"title": "either"}, revs(first, anyone))
        assert anyone.rev.startswith("3-") and either.rev.startswith("4-")

    async def test_a_replace_or_delete_must_name_a_revision(self, store, db):
        note = await store.create(NOTE, {"title": "t"})
        for unconditioned in (store.replace(NOTE, note.id, {"title": "x"}, None), store.delete(NOTE, note.id, None)):
            with pytest.raises(PreconditionRequired):
                await unconditioned
        assert (await db.get(note.id))["_rev"] == note.rev

    async def test_what_is_not_a_live_document_of_the_type_is_not_found(self, store):
        note = await store.create(NOTE, {"title": "t"})
        missing = uuid.uuid4().hex
        for absent in (
            store.read(NOTE, missing),
            store.read(USER, note.id),  # another type's
            store.patch(NOTE, missing, {"title": "x"}, None),
            store.replace(NOTE, missing, {"title": "x"}, frozenset({ANY_REVISION})),
            store.delete(NOTE, missing, frozenset({ANY_REVISION})),
            store.patch(USER, note.id, {}, None),
        ):
            with pytest.raises(DocumentNotFound):
                await absent

    async def test_invalid_values_are_refused_and_nothing_is_stored(self, store, db):
        note = await store.create(NOTE, {"title": "t"})
        for bad in (
            store.create(NOTE, {"title": ""}),
            store.create(NOTE, {"title": "x", "id": "mine"}),  # a reserved name
            store.create(NOTE, ["not", "an", "object"]),
            store.replace(NOTE, note.id, {"counter": 1}, revs(note)),  # title is required
            store.patch(NOTE, note.id, {"counter": -1}, None),
            store.patch(NOTE, note.id, "not an object", None),
        ):
            with pytest.raises(ValidationFailed):
                await bad
        assert [row["id"] for row in (await db.all_docs()).rows] == [note.id]
        assert (await db.get(note.id))["_rev"] == note.rev

    async def test_create_with_id_answers_what_is_there_and_continues_a_deleted_branch(self, store, db):
        seed = await store.create_with_id(NOTE, "seed-1", {"title": "seed"})
        again = await store.create_with_id(NOTE, "seed-1", {"title": "other"})
        assert seed.created and not again.created and again.rev == seed.rev and shown(again)["title"] == "seed"
        await store.delete(NOTE, "seed-1", revs(seed))
        reborn = await store.create_with_id(NOTE, "seed-1", {"title": "again"})
        assert reborn.created and reborn.rev.startswith("3-")  # on the tombstone's branch, signed for it
        assert (await store.read(NOTE, "seed-1"))["title"] == "again"

    async def test_two_sidecars_incrementing_with_if_match_lose_nothing(self, store, db, ring):
        """Each re-applies its change to what the 412 answered; no increment is lost."""
        note = await store.create(NOTE, {"title": "counter", "counter": 0})
        sidecars = [store, new_store(db, ring, "w-second")]
        conflicts = 0

        async def increment(i: int) -> None:
            nonlocal conflicts
            sidecar = sidecars[i % 2]
            current = await sidecar.read(NOTE, note.id)
            value, rev = current["counter"], current["_rev"]
            for _ in range(100):
                try:
                    if i % 4 < 2:
                        await sidecar.patch(NOTE, note.id, {"counter": value + 1}, frozenset({rev}))
                    else:
                        await sidecar.replace(NOTE, note.id, {"title": "counter", "counter": value + 1}, {rev})
                    return
                except StaleRevision as stale:
                    conflicts += 1
                    value, rev = stale.representation["counter"], stale.rev
            raise AssertionError("never got through")

        await asyncio.gather(*(increment(i) for i in range(12)))
        assert (await store.read(NOTE, note.id))["counter"] == 12
        assert conflicts > 0  # they really raced

    async def test_patches_without_if_match_from_two_sidecars_all_land(self, store, db, ring):
        note = await store.create(NOTE, {"title": "t", "attributes": {}})
        sidecars = [store, new_store(db, ring, "w-second")]
        answers = await asyncio.gather(
            *(sidecars[i % 2].patch(NOTE, note.id, {"attributes": {f"k{i}": str(i)}}, None) for i in range(12))
        )
        final = await store.read(NOTE, note.id)
        assert final["attributes"] == {f"k{i}": str(i) for i in range(12)} and final["_rev"].startswith("13-")
        assert sorted(int(a.rev.split("-")[0]) for a in answers) == list(range(2, 14))

    async def test_merge_types_keep_bookkeeping_and_immutable_values(self, store, db):
        cart = await created(store, CART, {"owner": "o1", "title": "t", "visits": 2, "items": ["x"]})
        stored = await db.get(cart["_id"])
        at = stored["meta"]["created_at"]
        assert stored["meta"]["changed"] == {"owner": at, "title": at, "visits": at, "items": at}
        assert stored["meta"]["counters"] == {"visits": {"base": 2}, "score": {"base": 0}}
        await asyncio.sleep(0.002)
        await store.patch(CART, cart["_id"], {"title": "u", "visits": 5}, None)
        patched = await db.get(cart["_id"])
        changed = patched["meta"]["changed"]
        assert changed["title"] == changed["visits"] == patched["meta"]["updated_at"] > at
        assert changed["owner"] == changed["items"] == at
        assert patched["meta"]["counters"]["visits"] == {"base": 2, "inc": {"w-store": 3}}
        with pytest.raises(ValidationFailed, match="is immutable: it cannot be changed once set"):
            await store.patch(CART, cart["_id"], {"owner": "o2"}, None)
        with pytest.raises(ValidationFailed, match="is immutable: it cannot be changed once set"):
            await store.replace(CART, cart["_id"], {"owner": "o2"}, frozenset({ANY_REVISION}))
        await store.replace(CART, cart["_id"], {"owner": "o1", "title": "v"}, frozenset({ANY_REVISION}))
        kept = await db.get(cart["_id"])
        assert kept["owner"] == "o1" and kept["meta"]["changed"]["owner"] == at
        profile = await created(store, PROFILE, {"name": "Ann"})
        assert "changed" not in profile["meta"]  # latest types keep no bookkeeping
        later = shown(await store.patch(PROFILE, profile["_id"], {"account": "acc-9"}, None))  # set once
        assert later["account"] == "acc-9"
        with pytest.raises(ValidationFailed, match="is immutable: it cannot be removed once set"):
            await store.patch(PROFILE, profile["_id"], {"account": None}, None)

    async def test_secrets_are_checked_against_their_hashes(self, store):
        user = await store.create(USER, {**ANN, "password": "first-pass-1"})
        assert "password" not in shown(user)
        candidates = {"password": "first-pass-1", "email": "ann@example.com"}
        assert await store.verify_secrets(USER, user.id, candidates) == {"password": True, "email": True}
        wrong = await store.verify_secrets(USER, user.id, {"password": "other-pass-2", "email": "bo@example.com"})
        assert wrong == {"password": False, "email": False}
        assert store.stats.verify_attempts == {"user": 2} and store.stats.verify_failures == {"user": 1}
        plain = await store.create(USER, {"email": "bo@example.com", "name": "Bo"})
        assert await store.verify_secrets(USER, plain.id, {"password": "any-pass-3"}) == {"password": False}
        for bad in ({}, [], {"name": "Ann"}, {"password": 7}, {"password": "x" * 80}):
            with pytest.raises(ValidationFailed):
                await store.verify_secrets(USER, user.id, bad)

    # -- changed behind the store's back --------------------------------------------------

    async def test_an_edited_document_is_an_integrity_violation_on_every_path(self, store, db):
        user = await store.create(USER, ANN)
        raw = await db.get(user.id)
        await db.put({**raw, "name": "Mallory"})  # not signed again
        for way in (
            store.read(USER, user.id),
            store.get(USER, user.id),
            store.patch(USER, user.id, {"age": 1}, None),
            store.patch(USER, user.id, {}, None),
            store.replace(USER, user.id, ANN, frozenset({ANY_REVISION})),
            store.delete(USER, user.id, frozenset({ANY_REVISION})),
            store.verify_secrets(USER, user.id, {"email": ANN["email"]}),
        ):
            with pytest.raises(IntegrityViolation) as violation:
                await way
            assert violation.value.docid == user.id and "Mallory" not in str(violation.value)
        assert store.stats.integrity_violations == 7
        assert (await db.get(user.id))["name"] == "Mallory"  # nothing written over the evidence

    async def test_an_older_body_over_the_current_revision_is_an_integrity_violation(self, store, db):
        user = await store.create(USER, ANN)
        old = await db.get(user.id)
        await store.patch(USER, user.id, {"name": "Renamed"}, None)
        await db.put({**old, "_rev": (await db.get(user.id))["_rev"]})  # the old signed body as generation 3
        with pytest.raises(IntegrityViolation, match="signed for revision generation 1"):
            await store.read(USER, user.id)

    async def test_changed_type_version_or_deleted_marker_is_a_violation_never_not_found(self, store, db):
        users = [await store.create(USER, {**ANN, "name": f"u{i}"}) for i in range(3)]
        hidden, retyped, reversioned = [await db.get(u.id) for u in users]
        await db.put({**hidden, "meta": {**hidden["meta"], "deleted_at": hidden["meta"]["updated_at"]}})
        await db.put({**retyped, "type": "note_v1.0"})
        await db.put({**reversioned, "type": "user_v1.3"})
        for model, user in ((USER, users[0]), (USER, users[1]), (NOTE, users[1]), (USER, users[2])):
            with pytest.raises(IntegrityViolation):
                await store.read(model, user.id)
        answers = await store.write(
            USER,
            [
                *(Change(Op.PATCH, u.id, {"age": 1}) for u in users[:2]),
                Change(Op.DELETE, users[2].id, None, frozenset({ANY_REVISION})),
            ],
        )
        assert all(isinstance(answer, IntegrityViolation) for answer in answers)

    async def test_a_document_of_another_database_is_an_integrity_violation(self, store, db, couch, keys_dir):
        note = await store.create(NOTE, {"title": "t"})
        copy = {k: v for k, v in (await db.get(note.id)).items() if k != "_rev"}
        other = couch.database(f"{db.name}-copy")
        await other.create()
        try:
            await other.put(copy)  # same id, same keysets, another database
            from_there = new_store(other, Keyring(KeysDir(keys_dir), other.name), "w-there")
            with pytest.raises(IntegrityViolation):
                await from_there.read(NOTE, note.id)
        finally:
            await other.drop()

    async def test_a_member_rollback_is_an_integrity_violation(self, store, db):
        user = await store.create(USER, ANN)
        first = await db.get(user.id)
        await store.patch(USER, user.id, {"email": "new@example.com"}, None)
        await roll_back(db, user.id, first)
        for way in (
            store.read(USER, user.id),
            store.verify_secrets(USER, user.id, {"email": ANN["email"]}),  # the old secret must not verify
            store.patch(USER, user.id, {"name": "Ann B"}, None),
        ):
            with pytest.raises(IntegrityViolation, match=r"rolled back|not the service's"):
                await way
        assert len(await live_leaves(db, user.id)) == 1  # nothing rewritten: an operator decides

    async def test_an_undone_soft_delete_is_an_integrity_violation(self, store, db):
        user = await store.create(USER, ANN)
        live = await db.get(user.id)
        await store.delete(USER, user.id, revs(user))
        await roll_back(db, user.id, live)
        with pytest.raises(IntegrityViolation):
            await store.read(USER, user.id)

    async def test_a_hard_delete_stays_deleted_under_an_old_body_put_back(self, store, db):
        note = await store.create(NOTE, {"title": "gone for good"})
        live = await db.get(note.id)
        await store.delete(NOTE, note.id, revs(note))
        await roll_back(db, note.id, live)
        with pytest.raises(DocumentNotFound):  # the later event, the signed delete, wins
            await store.read(NOTE, note.id)
        assert await live_leaves(db, note.id) == []  # the read settled it: the body put back is removed

    async def test_a_deletion_outside_the_service_above_a_live_leaf_is_an_integrity_violation(self, store, db):
        note = await store.create(NOTE, {"title": "one"})
        first = await db.get(note.id)
        await store.replace(NOTE, note.id, {"title": "two"}, revs(note))
        await roll_back(db, note.id, first)
        for way in (
            store.read(NOTE, note.id),
            store.replace(NOTE, note.id, {"title": "three"}, frozenset({ANY_REVISION})),
        ):
            with pytest.raises(IntegrityViolation):
                await way

    @pytest.mark.parametrize("depth", [300, 1100], ids=["deeper than the canonical form", "deeper than the parser"])
    async def test_a_poisoned_document_is_an_integrity_violation_never_an_internal_error(self, store, db, depth):
        users = [await store.create(USER, {**ANN, "name": f"p{i}"}) for i in range(2)]
        victim = users[1].id
        text = orjson.dumps({**(await db.get(victim)), "address": "DEEP"}).decode()
        body = text.replace('"DEEP"', '{"a":' * depth + "1" + "}" * depth).encode()
        answer = await db.couch.transport.handle(Request("PUT", path(db.name, victim), (), body))
        assert answer.status in (201, 202), answer.body
        for way in (store.read(USER, victim), store.replace(USER, victim, ANN, frozenset({ANY_REVISION}))):
            with pytest.raises(IntegrityViolation):
                await way
        answers = await store.write(USER, [Change(Op.PATCH, victim, {"age": 3}), Change(Op.PATCH, users[0].id, {})])
        assert isinstance(answers[0], IntegrityViolation) and isinstance(answers[1], Answer)

    # -- older versions -----------------------------------------------------------------

    async def test_an_older_version_is_read_upgraded_and_written_as_the_new_one(self, store, db, ring):
        old = Lifecycle(ring, "w-v1").create(MEMBER_V1, "m1", {"nick": "ann", "email": "a@example.com"}, {}, PAST)
        await db.bulk_docs([{**old.doc, "_rev": "1-aa", "_revisions": {"start": 1, "ids": ["aa"]}}], new_edits=False)
        member = await store.read(MEMBER_V2, "m1")
        assert member["type"] == "member_v2.0" and member["_rev"] == "1-aa" and member["level"] == 0
        assert (await db.get("m1"))["type"] == "member_v1.0"  # read upgraded, stored as it was
        got = shown(await store.get(MEMBER_V2, "m1"))
        assert got["name"] == "ann" and got["meta"]["version"] == "2.0" and got["email"] == "a@example.com"
        await store.patch(MEMBER_V2, "m1", {"level": 2}, frozenset({"1-aa"}))
        stored = await db.get("m1")
        assert stored["type"] == "member_v2.0" and stored["email"].startswith("aead2:") and "nick" not in stored

    async def test_an_older_version_that_fails_its_check_or_its_migration_is_named(self, store, db, ring):
        writer = Lifecycle(ring, "w-v1")
        tampered = {**writer.create(MEMBER_V1, "t1", {"nick": "ann"}, {}, PAST).doc, "nick": "mallory"}
        nameless = writer.create(MEMBER_V1, "n1", {"nick": ""}, {}, PAST).doc  # minLength 1: hand-made
        history = {"_rev": "1-aa", "_revisions": {"start": 1, "ids": ["aa"]}}
        assert await db.bulk_docs([{**tampered, **history}, {**nameless, **history}], new_edits=False) == []
        with pytest.raises(IntegrityViolation):
            await store.read(MEMBER_V2, "t1")
        with pytest.raises(MigrationFailed, match="/name"):
            await store.read(MEMBER_V2, "n1")
        assert (await db.get("n1"))["type"] == "member_v1.0"
