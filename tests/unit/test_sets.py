"""``merge: set`` arrays as observed-remove sets (pure): what writes record in
``meta.sets``, how leaves merge (removals survive concurrent edits, an item added again
concurrently with its removal stays), documents written before records were kept, stale
records, a replayed old leaf, re-keying, an undone write, and the metadata's size."""

from __future__ import annotations

import itertools

import pytest
from support.conflicts import CART, at, body, clear, edit, make

from data_service.conflicts import sets
from data_service.conflicts.rules import Unresolvable, merge
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.protection import Keyring


@pytest.fixture(scope="module")
def keys(keys_dir) -> Keyring:
    return Keyring(KeysDir(keys_dir), "set-tests")


def items(keys, doc: dict) -> list | None:
    return clear(keys, CART, doc).get("items")


def record(doc: dict, name: str = "items") -> dict:
    return doc["meta"]["sets"][name]


def legacy(keys, doc: dict, rev: str) -> dict:
    """``doc`` as written before sets kept records: no ``meta.sets`` (signed again)."""
    meta = {k: v for k, v in doc["meta"].items() if k != "sets"}
    return {
        **keys.sign({**{k: v for k, v in doc.items() if k != "sig"}, "meta": meta}, int(rev.split("-")[0])),
        "_rev": rev,
    }


# --- what writes record ------------------------------------------------------------


def test_writes_give_added_items_a_dot_keep_kept_ones_and_drop_removed_ones(keys):
    doc = make(keys, CART, {"owner": "o", "items": ["x", "y"]}, at(0), writer="w1")
    assert record(doc)["dots"] == [[["w1", 1]], [["w1", 2]]] and record(doc)["context"] == {"w1": 2}
    two = edit(keys, CART, doc, {"items": ["y", "z"]}, at(1), "w2", "2-b")
    assert record(two)["dots"] == [[["w1", 2]], [["w2", 1]]]  # y keeps its dot, z gets w2's first
    assert record(two)["context"] == {"w1": 2, "w2": 1}  # x's dot is gone, still covered
    three = edit(keys, CART, two, {"title": "t"}, at(2), "w1", "3-c")
    assert record(three) == record(two)  # the set did not change: neither did its record
    gone = edit(keys, CART, three, {"items": None}, at(3), "w1", "4-d")
    assert "items" not in gone and record(gone) == {"dots": [], "context": {"w1": 2, "w2": 1}, "digest": None}
    again = edit(keys, CART, gone, {"items": ["x"]}, at(4), "w1", "5-e")
    assert record(again)["dots"] == [[["w1", 3]]]  # added again: a new dot, never an old one


def test_the_record_names_no_item_values_even_of_an_encrypted_set(keys):
    doc = make(keys, CART, {"owner": "o", "tags": ["secret-tag"]}, at(0), writer="w1")
    assert doc["tags"].startswith("aead2:") and "secret-tag" not in str(doc["meta"])
    assert record(doc, "tags") == {
        "dots": [[["w1", 1]]],
        "context": {"w1": 1},
        "digest": sets.stored_digest(doc["tags"]),
    }


# --- merges --------------------------------------------------------------------------


def test_a_removal_concurrent_with_other_edits_stays_removed_on_every_order(keys):
    base = make(keys, CART, {"owner": "o", "items": ["admin", "editor", "viewer"], "tags": ["p"]}, at(0))
    revoke = edit(keys, CART, base, {"items": ["editor", "viewer"]}, at(1), "wa", "2-aaaa")
    title = edit(keys, CART, base, {"title": "B"}, at(2), "wb", "2-bbbb")
    grow = edit(keys, CART, base, {"items": ["admin", "editor", "viewer", "guest"]}, at(3), "wc", "2-cccc")
    untag = edit(keys, CART, base, {"tags": []}, at(4), "wd", "2-dddd")
    results = [merge(CART, list(order), keys) for order in itertools.permutations([revoke, title, grow, untag])]
    assert all(r == results[0] for r in results)
    merged = clear(keys, CART, results[0])
    assert merged["items"] == ["editor", "viewer", "guest"] and merged["title"] == "B" and merged["tags"] == []
    assert record(results[0])["context"] == {"w0": 3, "wc": 1}


def test_an_item_added_again_concurrently_with_its_removal_stays(keys):
    base = make(keys, CART, {"owner": "o", "items": ["x", "y"]}, at(0))
    removed = edit(keys, CART, base, {"items": ["y"]}, at(1), "wa", "2-aaaa")
    dropped = edit(keys, CART, base, {"items": ["y"]}, at(1), "wb", "2-bbbb")
    readded = edit(keys, CART, dropped, {"items": ["y", "x"]}, at(2), "wb", "3-bbbb")  # revoked and granted again
    assert items(keys, merge(CART, [removed, readded], keys)) == ["y", "x"]
    assert items(keys, merge(CART, [removed, dropped], keys)) == ["y"]  # both removed it: gone

    empty = make(keys, CART, {"owner": "o", "items": []}, at(0))
    added = edit(keys, CART, empty, {"items": ["z"]}, at(1), "wa", "2-aaaa")
    taken = edit(keys, CART, added, {"items": []}, at(2), "wa", "3-aaaa")  # added and removed on one node
    elsewhere = edit(keys, CART, empty, {"items": ["z"]}, at(1), "wb", "2-bbbb")  # added on the other
    merged = merge(CART, [taken, elsewhere], keys)
    assert items(keys, merged) == ["z"] and record(merged)["dots"] == [[["wb", 1]]]


def test_a_set_emptied_by_the_last_change_stays_empty_or_absent(keys):
    base = make(keys, CART, {"owner": "o", "items": ["x"]}, at(0))
    emptied = edit(keys, CART, base, {"items": []}, at(2), "wa", "2-aaaa")
    removed = edit(keys, CART, base, {"items": None}, at(2), "wa", "2-aaaa")
    other = edit(keys, CART, base, {"title": "t"}, at(1), "wb", "2-bbbb")
    assert items(keys, merge(CART, [emptied, other], keys)) == []
    assert "items" not in clear(keys, CART, merge(CART, [removed, other], keys))
    plus = edit(keys, CART, base, {"items": ["x", "new"]}, at(1), "wb", "2-bbbb")
    assert items(keys, merge(CART, [removed, plus], keys)) == ["new"]  # what it had not seen comes back


def test_merging_the_merge_again_changes_nothing(keys):
    base = make(keys, CART, {"owner": "o", "items": ["x", "y"]}, at(0))
    a = edit(keys, CART, base, {"items": ["y", "a"]}, at(1), "wa", "2-aaaa")
    b = edit(keys, CART, base, {"items": ["x", "y", "b"]}, at(2), "wb", "2-bbbb")
    assert merge(CART, [a], keys) == body(a)  # one leaf (the others discarded): nothing to write
    merged = merge(CART, [a, b], keys)
    assert items(keys, merged) == ["y", "b", "a"]
    winner = keys.sign({**merged, "_rev": "3-0001"}, 3)
    assert merge(CART, [winner, a], keys) == body(winner) == merge(CART, [winner, b, a], keys)


def test_a_replayed_old_leaf_brings_no_removed_item_back(keys):
    base = make(keys, CART, {"owner": "o", "items": ["admin", "viewer"]}, at(0), rev="1-aaaa")
    revoked = edit(keys, CART, base, {"items": ["viewer"]}, at(1), "wa", "2-aaaa")
    # an administrator re-attaches the original body as a concurrent leaf (what no check can tell apart)
    merged = merge(CART, [revoked, base], keys)
    assert items(keys, merged) == ["viewer"]


def test_leaves_that_disagree_on_a_dot_are_unresolvable(keys):
    base = make(keys, CART, {"owner": "o", "items": []}, at(0))
    one = edit(keys, CART, base, {"items": ["x"]}, at(1), "wa", "2-aaaa")
    two = edit(keys, CART, base, {"items": ["y"]}, at(1), "wa", "2-bbbb")  # one writer, one dot, two items
    with pytest.raises(Unresolvable, match="set 'items': dot \\['wa', 1\\] names two different items"):
        merge(CART, [one, two], keys)


# --- documents written before records were kept, and stale records ---------------------


def test_documents_without_records_merge_by_union_and_are_upgraded_on_their_next_write(keys):
    base = legacy(keys, make(keys, CART, {"owner": "o", "items": ["x", "y"]}, at(0)), "1-base")
    assert "sets" not in base["meta"]
    a = legacy(keys, edit(keys, CART, base, {"items": ["x"]}, at(1), "wa", "1-base"), "2-aaaa")
    b = legacy(keys, edit(keys, CART, base, {"title": "t"}, at(2), "wb", "1-base"), "2-bbbb")
    assert items(keys, merge(CART, [a, b], keys)) == ["x", "y"]  # as before: a union

    # written by this release over the same revision on two nodes: both name the old items alike
    removed = edit(keys, CART, base, {"items": ["x"]}, at(1), "wa", "1-base")
    titled = edit(keys, CART, base, {"title": "t"}, at(2), "wb", "1-base")
    assert record(titled)["dots"] == [[["@1-base", 1]], [["@1-base", 2]]]
    assert record(removed)["context"] == {"@1-base": 2}
    merged = merge(CART, [{**removed, "_rev": "2-aaaa"}, {**titled, "_rev": "2-bbbb"}], keys)
    assert items(keys, merged) == ["x"] and clear(keys, CART, merged)["title"] == "t"


def test_a_record_that_no_longer_describes_its_array_counts_as_absent(keys):
    base = make(keys, CART, {"owner": "o", "items": ["x", "y"]}, at(0))
    removed = edit(keys, CART, base, {"items": ["y"]}, at(1), "wa", "2-aaaa")
    # a release that kept no records changed the array and carried meta over as it was
    stale = {**base, "items": ["x", "y", "z"]}
    stale = {**keys.sign({k: v for k, v in stale.items() if k not in ("sig", "_rev")}, 2), "_rev": "2-bbbb"}
    assert sets.record_of(stale["meta"], "items", stale["items"], ["x", "y", "z"]) is None
    assert items(keys, merge(CART, [removed, stale], keys)) == ["y", "x", "z"]  # union: nothing misnamed


# --- re-keying, undone writes, size ------------------------------------------------------


def test_reprotected_sets_keep_their_records(keys_dir, tmp_path):
    KeysDir(tmp_path).create()
    old = Lifecycle(Keyring(KeysDir(tmp_path), "sets"), "w1")
    doc = {**old.create(CART, "c1", {"owner": "o", "tags": ["p", "q"]}, {}, at(0)).doc, "_rev": "1-a"}
    KeysDir(tmp_path).promote("encryption", KeysDir(tmp_path).rotate("encryption"))
    new = Lifecycle(Keyring(KeysDir(tmp_path), "sets"), "w1")
    again, _ = new.reprotected(CART, doc)
    assert again is not None and again["tags"] != doc["tags"]
    assert record(again, "tags") == {**record(doc, "tags"), "digest": sets.stored_digest(again["tags"])}
    assert sets.record_of(again["meta"], "tags", again["tags"], ["p", "q"]) is not None


def test_metadata_stays_bounded_by_items_and_writers(keys):
    doc = make(keys, CART, {"owner": "o", "items": []}, at(0))
    for n in range(1, 61):  # three writers add and remove items, many times
        writer = f"w{n % 3}"
        kept = (items(keys, doc) or [])[-4:]
        doc = edit(keys, CART, doc, {"items": [*kept, f"i{n}"]}, at(n / 10), writer, f"{n + 1}-{n:04x}")
    meta = record(doc)
    assert len(items(keys, doc)) == 5 and len(meta["dots"]) == 5
    assert sum(len(dots) for dots in meta["dots"]) == 5 and len(meta["context"]) == 3
    assert meta["context"] == {"w0": 20, "w1": 20, "w2": 20}
