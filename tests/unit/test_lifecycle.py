"""The pure document lifecycle: every stored document is made by it (no server needed),
signed for the revision generation its write creates."""

from __future__ import annotations

import datetime as dt

import pytest

from data_service.envelope import Removed, properties
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import ValidationFailed, parse_models
from data_service.protection import IntegrityViolation, Keyring

MODELS = parse_models(
    {
        "types": {
            "account": {
                "version": "1.0",
                "conflict": "merge",
                "properties": {
                    "name": {"type": "string"},
                    "note": {"type": "string"},
                    "iban": {"type": "string", "protection": "encrypt"},
                    "country": {"type": "string", "protection": "encrypt-deterministic"},
                    "email": {"type": "string", "protection": "sha3-512"},
                    "password": {"type": "string", "protection": "bcrypt", "bcrypt_cost": 10},
                    "owner": {"type": "string", "immutable": True},
                    "visits": {"type": "integer", "merge": "counter"},
                },
            },
        }
    }
)
ACCOUNT = MODELS.get("account")
AT = "2026-01-01T00:00:00.000Z"
LATER = "2026-01-01T00:00:05.000Z"
VALUES = {
    "name": "Ada",
    "note": "n",
    "iban": "GB00 0000",
    "country": "GB",
    "email": "ada@example.com",
    "owner": "o1",
    "visits": 1,
}


@pytest.fixture(scope="module")
def core(tmp_path_factory) -> Lifecycle:
    directory = tmp_path_factory.mktemp("keys")
    KeysDir(directory).create()
    return Lifecycle(Keyring(KeysDir(directory), "accounts"), "w1")


def hashed(core: Lifecycle, password: str) -> dict:
    slot = ACCOUNT.slot("password", "a1")
    return {"password": ACCOUNT.properties["password"].kind.protect(core.keys, slot, password)}


def created(core: Lifecycle) -> dict:
    return {**core.create(ACCOUNT, "a1", {**VALUES, "password": "pw-1"}, hashed(core, "pw-1"), AT).doc, "_rev": "1-a"}


def test_a_patch_of_one_plain_property_leaves_every_other_stored_value_byte_identical(core):
    before = created(core)
    after = core.patch(ACCOUNT, before, {"note": "changed"}, {}, LATER).doc
    assert after["_rev"] == "1-a" and after["sig"]["gen"] == 2  # written over 1-a: it becomes generation 2
    core.check_signature({**after, "_rev": "2-b"})
    assert after["note"] == "changed"
    for name in ("iban", "country", "email", "password", "name", "owner", "visits"):
        assert after[name] == before[name], name
    assert after["meta"]["changed"]["note"] == after["meta"]["updated_at"] == LATER
    assert after["meta"]["changed"]["iban"] == AT  # untouched: its time is kept


def test_a_replace_with_the_same_values_keeps_ciphertexts_and_new_values_get_new_ones(core):
    before = created(core)
    same = core.replace(ACCOUNT, before, {**VALUES, "password": "pw-2"}, hashed(core, "pw-2"), LATER).doc
    assert all(same[n] == before[n] for n in ("iban", "country", "email"))
    assert same["password"] != before["password"]  # a bcrypt value given is always hashed anew
    changed = core.replace(ACCOUNT, before, {**VALUES, "iban": "DE00 1111", "email": "b@example.com"}, {}, LATER).doc
    assert changed["iban"] != before["iban"] and changed["email"] != before["email"]
    assert changed["password"] == before["password"]  # never returned, so a body omitting it keeps it
    assert core.clear(ACCOUNT, changed)["iban"] == "DE00 1111"
    assert set(changed["meta"]["changed"]) >= {"iban", "email"}
    assert changed["meta"]["changed"]["email"] == changed["meta"]["changed"]["iban"] == LATER
    removed = core.replace(ACCOUNT, before, {**VALUES, "password": None}, {}, LATER).doc
    assert "password" not in removed and removed["meta"]["changed"]["password"] == LATER  # null removes it


def test_immutable_values_cannot_change_or_go(core):
    before = created(core)
    with pytest.raises(ValidationFailed, match="cannot be changed"):
        core.patch(ACCOUNT, before, {"owner": "o2"}, {}, LATER)
    with pytest.raises(ValidationFailed, match="cannot be removed"):
        core.patch(ACCOUNT, before, {"owner": None}, {}, LATER)
    assert core.patch(ACCOUNT, before, {"owner": "o1"}, {}, LATER).doc["owner"] == "o1"


def test_a_patch_is_validated_once_applied_and_hashed_values_are_kept_unless_named(core):
    before = created(core)
    with pytest.raises(ValidationFailed, match="unknown property"):
        core.patch(ACCOUNT, before, {"nickname": "x"}, {}, LATER)
    with pytest.raises(ValidationFailed, match="must be of type string"):
        core.patch(ACCOUNT, before, {"email": 7}, {}, LATER)
    removed = core.patch(ACCOUNT, before, {"email": None, "iban": None}, {}, LATER).doc
    assert "email" not in removed and "iban" not in removed and removed["password"] == before["password"]


def test_counters_and_writers_are_recorded(core):
    before = created(core)
    after = core.patch(ACCOUNT, before, {"visits": 4}, {}, LATER).doc
    assert after["meta"]["counters"]["visits"] == {"base": 1, "inc": {"w1": 3}}


def test_a_write_is_stamped_after_what_it_overwrites_even_with_a_clock_behind(core):
    before = created(core)
    after = core.patch(ACCOUNT, before, {"note": "x"}, {}, "2025-12-31T00:00:00.000Z").doc
    assert after["meta"]["updated_at"] == "2026-01-01T00:00:00.001Z"


def test_reconciling_identical_leaves_writes_nothing(core):
    base = created(core)
    leaf, write = core.reconciled(ACCOUNT, [base, {**base, "_rev": "1-0"}])
    assert write is None and leaf["_rev"] == "1-a"
    other = {**core.patch(ACCOUNT, base, {"note": "other"}, {}, LATER).doc, "_rev": "2-b"}
    leaf, write = core.reconciled(ACCOUNT, [base, other])
    assert leaf["_rev"] == "2-b" and write is None  # the merge of an ancestor and its edit is the edit


def test_every_write_is_signed_for_the_generation_it_creates(core):
    base = created(core)
    assert base["sig"]["gen"] == 1
    core.check_signature(base)
    deleted = core.soft_delete(ACCOUNT, {**base, "_rev": "6-f"}, LATER)
    assert deleted["sig"]["gen"] == 7 and deleted["meta"]["deleted_at"]
    again = core.create(ACCOUNT, "a1", VALUES, {}, AT, tombstone="4-d").doc  # CouchDB continues the deleted branch
    assert again["sig"]["gen"] == 5 and "_rev" not in again
    core.check_signature({**again, "_rev": "5-e"})
    record = core.claim(ACCOUNT, "k", "a1", {}, dt.datetime.now(dt.UTC), 60, None, tombstone="2-b")
    assert record["sig"]["gen"] == 3
    over = core.claim(ACCOUNT, "k", "a1", {}, dt.datetime.now(dt.UTC), 60, {**record, "_rev": "3-c"})
    assert over["sig"]["gen"] == 4 and over["_rev"] == "3-c"


def test_a_tombstone_is_signed_for_its_place_and_says_why(core):
    parent = created(core)
    tombstone = core.tombstone(parent, Removed.DELETE, LATER)
    assert tombstone["_deleted"] is True and tombstone["sig"]["gen"] == 2 and tombstone["_rev"] == "1-a"
    assert tombstone["meta"] == {"deleted_at": LATER, "removed": "delete", "over": "1-a"}
    stored = {**tombstone, "_rev": "2-t", "_revisions": {"start": 2, "ids": ["t", "a"]}}
    assert core.removed(stored) is Removed.DELETE
    moved = {**tombstone, "_rev": "2-t", "_revisions": {"start": 2, "ids": ["t", "elsewhere"]}}
    with pytest.raises(IntegrityViolation, match=r"was signed for \S+, written on 1-elsewhere"):
        core.removed(moved)  # a signed tombstone attached to another branch
    with pytest.raises(IntegrityViolation):
        core.removed({"_id": "a1", "_rev": "2-t", "_deleted": True, "_revisions": {"start": 2, "ids": ["t", "a"]}})


def test_a_merged_winner_is_signed_one_generation_above_its_base(core):
    base = created(core)
    one = {**core.patch(ACCOUNT, base, {"note": "one"}, {}, LATER).doc, "_rev": "2-a"}
    two = {**core.patch(ACCOUNT, base, {"name": "Two"}, {}, LATER).doc, "_rev": "2-b"}
    leaf, write = core.reconciled(ACCOUNT, [one, two])
    assert leaf["_rev"] == "2-b" and write is not None and write["_rev"] == "2-b" and write["sig"]["gen"] == 3


def test_reprotection_touches_only_values_under_old_keys(core, tmp_path):
    KeysDir(tmp_path).create()
    old = Lifecycle(Keyring(KeysDir(tmp_path), "accounts"), "w1")
    doc = {**old.create(ACCOUNT, "a1", VALUES, {}, AT).doc, "_rev": "1-a"}
    KeysDir(tmp_path).promote("encryption", KeysDir(tmp_path).rotate("encryption"))
    new = Lifecycle(Keyring(KeysDir(tmp_path), "accounts"), "w1")
    again, stale = new.reprotected(ACCOUNT, doc)
    assert again is not None and stale == 0 and again["sig"]["gen"] == 2
    assert again["iban"] != doc["iban"] and again["country"] == doc["country"] and again["email"] == doc["email"]
    assert new.reprotected(ACCOUNT, again) == (None, 0)
    assert properties(again).keys() == properties(doc).keys()
