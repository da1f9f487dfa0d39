"""Replication conflicts: the models' conflict declarations and the merge rules (pure). What
needs a view or a second node is tests/server/test_conflicts_replicated.py's; what the
reconciler decides for one document is the store contract's
(tests/contracts/store_reconciler.py)."""

from __future__ import annotations

import itertools

import pytest
from support.conflicts import CART, PROFILE, at, body, clear, edit, make

from data_service.conflicts.rules import Unresolvable, merge
from data_service.keys import KeysDir
from data_service.models import ModelError, parse_models
from data_service.protection import Keyring


@pytest.fixture(scope="module")
def keys(keys_dir) -> Keyring:
    """For the pure tests: documents of no database."""
    return Keyring(KeysDir(keys_dir), "pure-tests")


# --- the models file ------------------------------------------------------------


def test_models_declare_policies_and_property_rules():
    assert (PROFILE.conflict_policy, CART.conflict_policy) == ("latest", "merge")
    assert PROFILE.properties["account"].immutable and not PROFILE.properties["name"].immutable
    assert CART.properties["items"].merge == "set" and CART.properties["visits"].merge == "counter"
    assert CART.properties["tags"].protection == "encrypt" and CART.properties["owner"].merge is None
    assert parse_models({"types": {"t": {"version": "1.0", "properties": {}}}}).get("t").conflict_policy == "latest"
    assert "conflict" not in CART.extras


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"conflict": "newest"}, "type 't': conflict 'newest' is not one of latest, merge"),
        (
            {"properties": {"p": {"type": "array", "merge": "set"}}},
            "type 't', property 'p': merge: set needs conflict: merge on the type (it is latest)",
        ),
        (
            {"conflict": "merge", "properties": {"p": {"type": "string", "merge": "set"}}},
            "type 't', property 'p': merge: set needs type array, not string",
        ),
        (
            {"conflict": "merge", "properties": {"p": {"type": "string", "merge": "counter"}}},
            "type 't', property 'p': merge: counter needs type integer or number, not string",
        ),
        (
            {
                "conflict": "merge",
                "properties": {"p": {"type": "integer", "merge": "counter", "protection": "encrypt"}},
            },
            "type 't', property 'p': merge: counter needs protection plain, not encrypt",
        ),
        (
            {"conflict": "merge", "properties": {"p": {"type": "integer", "merge": "sum"}}},
            "type 't', property 'p': merge 'sum' is not one of set, counter",
        ),
        (
            {"conflict": "merge", "properties": {"p": {"type": "array", "merge": "set", "immutable": True}}},
            "type 't', property 'p': merge: set and immutable exclude each other",
        ),
        (
            {"properties": {"p": {"type": "string", "protection": "bcrypt", "immutable": True}}},
            "type 't', property 'p': immutable cannot be combined with protection bcrypt",
        ),
        ({"properties": {"p": {"type": "string", "immutable": "yes"}}}, "type 't', property 'p': immutable"),
    ],
)
def test_models_errors_name_type_property_and_problem(spec, message):
    with pytest.raises(ModelError) as caught:
        parse_models({"types": {"t": {"version": "1.0", "properties": {}, **spec}}})
    assert message in str(caught.value)


# --- the merge rules (pure) -------------------------------------------------------


def test_latest_takes_the_later_edit_and_breaks_ties_by_revision(keys):
    base = make(keys, PROFILE, {"name": "Ann", "city": "Oslo"}, at(0))
    renamed = edit(keys, PROFILE, base, {"name": "Anna"}, at(2), "wa", "2-aaaa")
    moved = edit(keys, PROFILE, base, {"city": "Bergen"}, at(1), "wb", "2-ffff")
    merged = merge(PROFILE, [moved, renamed], keys)
    assert merged == body(renamed)  # the whole later edit; the earlier city change is gone
    assert merge(PROFILE, [renamed, moved], keys) == merged
    tie = edit(keys, PROFILE, base, {"city": "Bergen"}, at(2), "wb", "2-ffff")
    assert merge(PROFILE, [renamed, tie], keys) == body(tie)  # same time: the higher revision


def test_merge_keeps_every_side_and_is_deterministic_and_idempotent(keys):
    base = make(
        keys, CART, {"owner": "o1", "title": "t", "note": "n", "items": ["x"], "tags": ["p"], "visits": 5}, at(0)
    )
    a = edit(
        keys, CART, base, {"title": "A", "items": ["x", "a"], "tags": ["p", "q"], "visits": 6}, at(1), "wa", "2-aaaa"
    )
    b = edit(keys, CART, base, {"note": "B", "items": ["b", "x"], "visits": 8, "score": 1.5}, at(2), "wb", "2-bbbb")
    merged = merge(CART, [a, b], keys)
    assert clear(keys, CART, merged) == {
        "owner": "o1",
        "title": "A",
        "note": "B",
        "items": ["b", "x", "a"],
        "tags": ["p", "q"],
        "visits": 9,
        "score": 1.5,
    }
    assert merged["tags"] == a["tags"]  # the union equals A's set: its ciphertext is kept
    meta = merged["meta"]
    assert meta["updated_at"] == at(2) and meta["created_at"] == at(0)
    assert meta["changed"] == {
        "owner": at(0),
        "title": at(1),
        "note": at(2),
        "items": at(2),
        "tags": at(1),
        "visits": at(2),
        "score": at(2),
    }
    assert meta["counters"]["visits"] == {"base": 5, "inc": {"wa": 1, "wb": 3}}
    assert meta["counters"]["score"] == {"base": 0, "inc": {"wb": 1.5}}

    plain = {k: v for k, v in merged.items() if k not in ("tags",)}
    c = edit(keys, CART, base, {"title": "C", "visits": 4}, at(0.5), "wc", "2-cccc")
    results = [merge(CART, list(order), keys) for order in itertools.permutations([a, b, c])]
    assert all(r == results[0] for r in results)  # whatever the winner, the same document
    assert results[0]["title"] == "A" and results[0]["visits"] == 8  # 5 +1 +3 -1
    assert {k: v for k, v in merge(CART, [b, a], keys).items() if k != "tags"} == plain

    winner = keys.sign({**merged, "_rev": "3-0001"}, 3)  # written; the losers not deleted yet
    assert merge(CART, [winner, a], keys) == body(winner)
    assert merge(CART, [winner, b, a], keys) == body(winner)


def test_removal_counts_as_an_edit_and_set_removals_survive_other_edits(keys):
    base = make(keys, CART, {"owner": "o", "title": "t", "items": ["x", "y"]}, at(0))
    a = edit(keys, CART, base, {"title": None, "items": ["x"]}, at(2), "wa", "2-aaaa")
    b = edit(keys, CART, base, {"note": "B"}, at(1), "wb", "2-bbbb")
    merged = clear(keys, CART, merge(CART, [a, b], keys))
    assert "title" not in merged and merged["note"] == "B"
    assert merged["items"] == ["x"]  # removed on one side while the other edited something else: stays removed


def test_counter_decrements_and_resets_are_merged_too(keys):
    base = make(keys, CART, {"owner": "o", "visits": 10}, at(0))
    reset = edit(keys, CART, base, {"visits": 0}, at(1), "wa", "2-aaaa")
    more = edit(keys, CART, base, {"visits": 12}, at(2), "wb", "2-bbbb")
    merged = merge(CART, [reset, more], keys)
    assert merged["visits"] == 2 and merged["meta"]["counters"]["visits"] == {
        "base": 10,
        "inc": {"wb": 2},
        "dec": {"wa": 10},
    }
    # the same writer continuing on top of the merge: its own sums only grow
    after = edit(keys, CART, keys.sign({**merged, "_rev": "3-0"}, 3), {"visits": 3}, at(3), "wa", "4-0")
    assert after["meta"]["counters"]["visits"]["inc"] == {"wa": 1, "wb": 2}
    assert merge(CART, [after, more], keys)["visits"] == 3

    low = make(keys, CART, {"owner": "o", "visits": 1}, at(0))
    one = edit(keys, CART, low, {"visits": 0}, at(1), "wa", "2-aaaa")
    two = edit(keys, CART, low, {"visits": 0}, at(1), "wb", "2-bbbb")
    with pytest.raises(Unresolvable, match="'visits' breaks its schema"):  # -1 < minimum 0
        merge(CART, [one, two], keys)


def test_immutable_values_must_agree(keys):
    base = make(keys, PROFILE, {"name": "Ann"}, at(0))
    one = edit(keys, PROFILE, base, {"account": "acc-1"}, at(1), "wa", "2-aaaa")
    two = edit(keys, PROFILE, base, {"account": "acc-2"}, at(2), "wb", "2-bbbb")
    with pytest.raises(Unresolvable, match="immutable property 'account' differs"):
        merge(PROFILE, [one, two], keys)
    renamed = edit(keys, PROFILE, base, {"name": "Anna"}, at(2), "wb", "2-bbbb")
    merged = merge(PROFILE, [one, renamed], keys)  # set once on one side: kept
    assert merged["name"] == "Anna" and merged["account"] == "acc-1"


def test_a_union_that_breaks_the_schema_is_unresolvable(keys):
    base = make(keys, CART, {"owner": "o", "items": []}, at(0))
    a = edit(keys, CART, base, {"items": [f"a{i}" for i in range(30)]}, at(1), "wa", "2-aaaa")
    b = edit(keys, CART, base, {"items": [f"b{i}" for i in range(30)]}, at(2), "wb", "2-bbbb")
    with pytest.raises(Unresolvable, match="'items' breaks its schema"):
        merge(CART, [a, b], keys)


# --- against a real server: one database, leaves written with new_edits=false --------


# --- two nodes: two databases replicating both ways, one sidecar on each -------------


# --- the reconcile command ----------------------------------------------------------
