"""Type-version migrations: the models file's ``migrations`` (checked at startup, problems
named by type, version and step), the lifecycle's upgrade (verified first, revealed under
the old declarations, steps on clear values, validated, protected and signed as the new
version), registered functions, minor versions, merges of old and new leaves. On a real server:
tests/server/test_migrations_stored.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.migrations import AT, LATER, V1, V2, stored_v1

from data_service.envelope import properties
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import MigrationFailed, ModelError, parse_models
from data_service.protection import Keyring


@pytest.fixture(scope="module")
def core(keys_dir) -> Lifecycle:
    return Lifecycle(Keyring(KeysDir(keys_dir), "migrations"), "w1")


def spec(steps: list, v1: dict | None = None, v2: dict | None = None, **extra) -> dict:
    v1 = v1 if v1 is not None else {"a": {"type": "string"}, "h": {"type": "string", "protection": "sha3-512"}}
    v2 = v2 if v2 is not None else {"b": {"type": "string"}, "h": {"type": "string", "protection": "sha3-512"}}
    migration = {"1": {"properties": v1, "steps": steps}}
    return {"types": {"t": {"version": "2.0", "properties": v2, "migrations": migration, **extra}}}


# --- the models file ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (spec([]), "migration from version 1: property 'a' has no place in the version it leads to"),
        (
            spec([{"rename": {"from": "h", "to": "b"}}]),
            "step 1 (rename): 'h' is a sha3-512 hash, which binds its property name",
        ),
        (spec([{"rename": {"from": "x", "to": "b"}}]), "step 1 (rename): there is no property 'x' at this point"),
        (
            spec([{"rename": {"from": "a", "to": "b"}}], v2={"b": {"type": "string", "protection": "encrypt"}}),
            "property 'b' is plain but becomes encrypt: say so with a step {protect: {property: b, as: encrypt}}",
        ),
        (
            spec([{"rename": {"from": "a", "to": "b"}}, {"protect": {"property": "b", "as": "bcrypt"}}]),
            "step 2 (protect): bcrypt is too slow to run while reading a document",
        ),
        (
            spec([{"drop": "a"}, {"protect": {"property": "h", "as": "encrypt"}}]),
            "step 2 (protect): 'h' is a sha3-512 hash: it cannot be revealed to protect it anew",
        ),
        (
            spec([{"rename": {"from": "a", "to": "b"}}, {"default": {"property": "n", "value": 1}}]),
            "step 2 (default): 'n' is not declared in the version it leads to",
        ),
        (
            spec(
                [{"rename": {"from": "a", "to": "b"}}, {"default": {"property": "n", "value": -1}}],
                v2={"b": {"type": "string"}, "h": {"type": "string", "protection": "sha3-512"}, "n": {"minimum": 0}},
            ),
            "step 2 (default): the value for 'n': -1 is less than the minimum of 0",
        ),
        (
            spec([{"move_into": {"property": "h", "object": "b", "key": "k"}}]),
            "step 1 (move_into): 'h' is a sha3-512 hash: it cannot be moved",
        ),
        (
            spec([{"rename": {"from": "a", "to": "b"}}], required=["b", "c"]),
            "required names undeclared property 'c'",
        ),
        (
            spec(
                [{"rename": {"from": "a", "to": "b"}}],
                v2={
                    "b": {"type": "string"},
                    "c": {"type": "string"},
                    "h": {"protection": "sha3-512", "type": "string"},
                },
                required=["c"],
            ),
            "property 'c' is required but older documents lack it: add a default",
        ),
        (spec([{"frobnicate": "a"}]), "migration from version 1, step 1: unknown step 'frobnicate'"),
        (spec([{"drop": "a", "rename": {"from": "a", "to": "b"}}]), "migration from version 1, step 1:"),
        (spec([{"function": "nothing_here"}]), "no function 'nothing_here' is registered in the entry point group"),
        (
            {
                "types": {
                    "t": {"version": "3.0", "properties": {}, "migrations": {"1": {"properties": {}, "steps": []}}}
                }
            },
            "type 't': migrations must chain up to version 3: no steps from version 2",
        ),
        (
            {
                "types": {
                    "t": {"version": "1.0", "properties": {}, "migrations": {"1": {"properties": {}, "steps": []}}}
                }
            },
            "type 't': migrations must chain up to version 1: version 1 is not older than 1",
        ),
    ],
)
def test_models_file_problems_name_type_version_and_step(data, message):
    with pytest.raises(ModelError) as caught:
        parse_models(data)
    assert message in str(caught.value)


# --- the upgrade (pure) ---------------------------------------------------------------


def test_an_older_document_is_upgraded_as_the_next_write_would_store_it(core):
    old = stored_v1(core)
    new = core.current(V2, old)
    assert new is not None and new["type"] == "member_v2.0" and new["_rev"] == "3-c" and new["sig"]["gen"] == 4
    core.check_signature({**new, "_rev": "4-d"})
    assert set(properties(new)) == {"name", "email", "level", "address", "password", "country"}
    assert new["name"] == "ann" and new["level"] == 0 and new["address"] == {"city": "Oslo"}
    assert new["email"].startswith("aead2:") and "ann@example.com" not in str(new)  # protected as version 2 says
    assert new["password"] == old["password"] and new["country"] == old["country"]  # unchanged: stored form kept
    assert new["meta"] == old["meta"]  # times unchanged: the upgrade is no edit
    shown = core.representation(V2, new)
    assert shown["meta"]["version"] == "2.0" and shown["email"] == "ann@example.com" and "password" not in shown
    assert core.current(V2, new) is new and core.current(V1, new) is None  # a version 1 reader: not its type


def test_writes_over_an_upgraded_document_store_the_new_version(core):
    new = core.current(V2, stored_v1(core))
    patched = core.patch(V2, new, {"level": 2}, {}, LATER).doc
    assert patched["type"] == "member_v2.0" and patched["_rev"] == "3-c" and patched["sig"]["gen"] == 4
    assert patched["email"] == new["email"] and patched["level"] == 2 and "nick" not in patched


def steps_package(root: Path) -> Path:
    """A site directory with a distribution registering migration functions under the
    entry point group ``data_service.migrations``: split_name, broken and keep."""
    site = root / "site"
    (site / "ds_steps-1.0.dist-info").mkdir(parents=True)
    (site / "ds_steps-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: ds-steps\nVersion: 1.0\n")
    (site / "ds_steps-1.0.dist-info" / "entry_points.txt").write_text(
        "[data_service.migrations]\nsplit_name = ds_steps:split_name\nbroken = ds_steps:broken\nkeep = ds_steps:keep\n"
    )
    (site / "ds_steps.py").write_text(
        textwrap.dedent(
            """
            def split_name(values):
                first, _, last = values.pop("name").partition(" ")
                return {**values, "first": first, "last": last}

            def broken(values):
                raise RuntimeError("the secret value " + values["name"])

            def keep(values):
                return values
            """
        )
    )
    return site


@pytest.fixture
def registered(tmp_path, monkeypatch) -> Path:
    """The functions of ``steps_package`` registered in this process."""
    site = steps_package(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_chained_migrations_and_registered_functions(core, registered):
    v1 = {"nick": {"type": "string"}, "pin": {"type": "string", "protection": "bcrypt", "bcrypt_cost": 10}}
    v2 = {"name": {"type": "string"}, "pin": {"type": "string", "protection": "bcrypt", "bcrypt_cost": 10}}
    v3 = {
        "first": {"type": "string"},
        "last": {"type": "string", "minLength": 1},
        "pin": {"type": "string", "protection": "bcrypt", "bcrypt_cost": 10},
        "tier": {"type": "string"},
    }
    chain = {
        "1": {"properties": v1, "steps": [{"rename": {"from": "nick", "to": "name"}}]},
        "2": {"properties": v2, "steps": [{"function": "split_name"}, {"default": {"property": "tier", "value": "b"}}]},
    }
    model = parse_models({"types": {"p": {"version": "3.0", "properties": v3, "migrations": chain}}}).get("p")
    first = parse_models({"types": {"p": {"version": "1.0", "properties": v1}}}).get("p")
    pin = first.properties["pin"].kind.protect(core.keys, first.slot("pin", "p1"), "1234")
    old = {**core.create(first, "p1", {"nick": "Ada Lovelace", "pin": "x"}, {"pin": pin}, AT).doc, "_rev": "1-a"}
    shown = core.representation(model, core.current(model, old))
    assert {k: v for k, v in shown.items() if k not in ("id", "meta")} == {
        "first": "Ada",
        "last": "Lovelace",
        "tier": "b",
    }
    assert core.current(model, old)["pin"] == pin  # a hash travels as it is stored

    short = {**core.create(first, "p2", {"nick": "Ada"}, {}, AT).doc, "_rev": "1-a"}  # no last name: invalid as 3.0
    with pytest.raises(MigrationFailed, match=r"does not match version 3\.0 at /last") as caught:
        core.current(model, short)
    assert "Ada" not in str(caught.value)
    chain["2"]["steps"] = [{"function": "broken"}, {"default": {"property": "last", "value": "-"}}]
    bad = parse_models({"types": {"p": {"version": "3.0", "properties": v3, "migrations": chain}}}).get("p")
    with pytest.raises(MigrationFailed, match="function 'broken' raised RuntimeError") as caught:
        core.current(bad, old)
    assert "Lovelace" not in str(caught.value)


EMAIL = {"type": "string", "format": "email"}


def email_models(steps: list, old: str = "encrypt", new: str = "plain") -> dict:
    """A type whose version 1 declared ``email`` with protection ``old`` and version 2 with ``new``."""
    return spec(steps, v1={"email": {**EMAIL, "protection": old}}, v2={"email": {**EMAIL, "protection": new}})


@pytest.mark.parametrize(
    "steps",
    [
        [{"function": "keep"}],
        [{"function": "keep"}, {"function": "split_name"}],
        [
            {"rename": {"from": "email", "to": "mail"}},
            {"function": "keep"},
            {"rename": {"from": "mail", "to": "email"}},
        ],
        [{"function": "keep"}, {"drop": "first"}],  # a name the function made: no "no property" error after it
    ],
)
def test_a_function_step_never_changes_a_protection(registered, steps):
    """An ``encrypt`` property declared ``plain`` by mistake: function steps or not, the
    models file is refused naming the property, and a ``protect`` step says it on purpose."""
    with pytest.raises(ModelError) as caught:
        parse_models(email_models(steps))
    assert (
        "migration from version 1: property 'email' is encrypt but becomes plain: "
        "say so with a step {protect: {property: email, as: plain}}" in str(caught.value)
    )
    assert len(str(caught.value).splitlines()) == 1, str(caught.value)
    parse_models(email_models([*steps, {"protect": {"property": "email", "as": "plain"}}]))  # said so: accepted
    parse_models(email_models(steps, new="encrypt"))  # unchanged: accepted


def test_names_a_function_makes_may_be_protected_dropped_or_renamed_after_it(registered):
    v2 = {"first": {"type": "string", "protection": "encrypt"}, "surname": {"type": "string"}}
    steps = [
        {"function": "split_name"},
        {"protect": {"property": "first", "as": "encrypt"}},
        {"rename": {"from": "last", "to": "surname"}},
        {"drop": "name"},
    ]
    parse_models(spec(steps, v1={"name": {"type": "string"}}, v2=v2))


def test_startup_stops_on_a_protection_change_behind_a_function_step(registered, tmp_path, keys_dir):
    """As an operator meets it: ``serve`` exits 2 with one line naming the property."""
    models = tmp_path / "models.yaml"
    models.write_text(json.dumps(email_models([{"function": "keep"}])))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(registered), os.environ.get("PYTHONPATH", "")])}
    flags = ["--workers=1", f"--keys-dir={keys_dir}", f"--models={models}"]
    command = [sys.executable, "-m", "data_service", "serve", *flags]
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("serve started with an encrypt property declared plain behind a function step")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"data-service: {models}: type 't', migration from version 1: property 'email' is encrypt but becomes plain: "
        "say so with a step {protect: {property: email, as: plain}}"
    ]


def test_a_property_no_migration_declares_fails_the_migration(core):
    old = stored_v1(core)
    odd = {**core.keys.sign({**{k: v for k, v in old.items() if k != "sig"}, "extra": 1}, 3), "_rev": "3-c"}
    with pytest.raises(MigrationFailed, match="property 'extra' is not declared in version 1's properties"):
        core.current(V2, odd)


def test_a_minor_version_reads_older_minors_and_keeps_newer_minors_properties(core):
    newer = parse_models(
        {
            "types": {
                "member": {"version": "2.1", "properties": {"name": {"type": "string"}, "nick": {"type": "string"}}}
            }
        }
    ).get("member")
    older = parse_models({"types": {"member": {"version": "2.0", "properties": {"name": {"type": "string"}}}}})
    older = older.get("member")  # a 2.0 sidecar, which does not know "nick"
    doc = {**core.create(newer, "n1", {"name": "Ann", "nick": "annie"}, {}, AT).doc, "_rev": "1-a"}
    assert doc["type"] == "member_v2.1" and core.current(older, doc) is doc
    assert core.representation(older, doc) == {
        "id": "n1",
        "meta": core.representation(older, doc)["meta"],
        "name": "Ann",
    }
    patched = core.patch(older, doc, {"name": "Anna"}, {}, LATER).doc
    assert patched["type"] == "member_v2.1" and patched["nick"] == "annie" and patched["name"] == "Anna"
    replaced = core.replace(older, doc, {"name": "Anne"}, {}, LATER).doc
    assert replaced["type"] == "member_v2.1" and replaced["nick"] == "annie"
    back = core.patch(
        newer, {**patched, "_rev": "2-b"}, {"nick": None}, {}, LATER
    ).doc  # and a 2.1 sidecar reads 2.0 ones
    assert "nick" not in back and back["type"] == "member_v2.1"


def test_a_conflict_between_an_old_and_a_new_leaf_merges_upgraded(core):
    cart1 = {"items": {"type": "array", "merge": "set"}, "owner": {"type": "string"}, "note": {"type": "string"}}
    cart2 = {"items": {"type": "array", "merge": "set"}, "owner": {"type": "string"}, "memo": {"type": "string"}}
    one = parse_models({"types": {"c": {"version": "1.0", "conflict": "merge", "properties": cart1}}}).get("c")
    two = parse_models(
        {
            "types": {
                "c": {
                    "version": "2.0",
                    "conflict": "merge",
                    "properties": cart2,
                    "migrations": {"1": {"properties": cart1, "steps": [{"rename": {"from": "note", "to": "memo"}}]}},
                }
            }
        }
    ).get("c")
    base = {**core.create(one, "c1", {"owner": "o", "items": ["x", "y"], "note": "n"}, {}, AT).doc, "_rev": "1-a"}
    v1_leaf = {
        **core.patch(one, base, {"items": ["x"]}, {}, "2026-01-01T00:00:01.000Z").doc,
        "_rev": "2-a",
    }  # old sidecar
    v2_leaf = {
        **core.patch(two, core.current(two, base), {"memo": "m"}, {}, "2026-01-01T00:00:02.000Z").doc,
        "_rev": "2-b",
    }
    leaf, merged = core.reconciled(two, [v1_leaf, v2_leaf])
    assert leaf["_rev"] == "2-b" and merged is not None and merged["type"] == "c_v2.0"
    assert core.clear(two, merged) == {"owner": "o", "items": ["x"], "memo": "m"}  # the removal survives the upgrade


# --- on a real server -------------------------------------------------------------------
