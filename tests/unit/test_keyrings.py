"""Keyrings, protection kinds and keysets without a database: stored forms, bindings
(document, property, type, deployment, revision generation), version 1 documents,
canonical form of hostile values, two-phase rotation, keyset files."""

from __future__ import annotations

import json
import os

import pytest
import v1

from data_service.canonical import MAX_DEPTH, NotCanonical, canonical
from data_service.keys import KeysDir, KeysetError, kek_from, new_kek
from data_service.models import parse_models
from data_service.protection import IntegrityViolation, Keyring, KeyUnavailable

MODELS = parse_models(
    {
        "types": {
            "card": {
                "version": "1.0",
                "properties": {
                    "holder": {"type": "string"},
                    "number": {"type": "string", "protection": "encrypt"},
                    "cvv": {"type": "string", "protection": "encrypt"},
                    "country": {"type": "string", "protection": "encrypt-deterministic", "indexed": True},
                    "email": {"type": "string", "protection": "sha3-512", "indexed": True},
                    "limits": {"type": "object", "protection": "encrypt"},
                },
            },
            "other": {
                "version": "1.0",
                "properties": {"country": {"type": "string", "protection": "encrypt-deterministic"}},
            },
        }
    }
)
CARD, OTHER = MODELS.get("card"), MODELS.get("other")


def protect(ring: Keyring, model, docid: str, name: str, value):
    return model.properties[name].kind.protect(ring, model.slot(name, docid), value)


def reveal(ring: Keyring, model, docid: str, name: str, stored):
    return model.properties[name].kind.reveal(ring, model.slot(name, docid), stored)


def is_current(ring: Keyring, model, name: str, stored) -> bool:
    return model.properties[name].kind.is_current(ring, model.slot(name, "d"), stored)


def lookup_values(ring: Keyring, model, name: str, value) -> list:
    return model.properties[name].kind.lookup_values(ring, model.slot(name, ""), value)


@pytest.fixture
def keys(tmp_path) -> KeysDir:
    keys = KeysDir(tmp_path / "keys")
    keys.create()
    return keys


def ring(keys: KeysDir, deployment: str = "orders", **options) -> Keyring:
    return Keyring(keys, deployment, **options)


def card(protector: Keyring, docid: str = "d1", rev: str = "1-a") -> dict:
    """A card as a sidecar created it, stored at ``rev`` (signed for generation 1)."""
    values = {
        "holder": "Ada",
        "number": "4111111111111111",
        "cvv": "123",
        "country": "GB",
        "email": "ada@example.com",
        "limits": {"daily": 500},
    }
    props = {name: protect(protector, CARD, docid, name, value) for name, value in values.items()}
    body = {"_id": docid, "type": "card_v1.0", "meta": {"created_at": "t", "updated_at": "t"}, **props}
    return {**protector.sign(body, 1), "_rev": rev}


def test_stored_forms_name_their_key_and_hide_the_value(keys):
    protector = ring(keys)
    doc = card(protector)
    raw = json.dumps(doc)
    for secret in ("4111111111111111", "ada@example.com", '"GB"', "daily"):
        assert secret not in raw
    assert doc["holder"] == "Ada"
    assert doc["number"].startswith(f"aead2:{protector.encryption.primary}:")
    assert doc["country"].startswith(f"daead2:{protector.deterministic.primary}:")
    assert doc["email"].startswith(f"sha3:{protector.lookup.primary}:") and len(doc["email"]) > 80
    assert set(doc["sig"]) == {"v", "kid", "gen", "mac"} and doc["sig"]["v"] == 2 and doc["sig"]["gen"] == 1
    assert reveal(protector, CARD, "d1", "limits", doc["limits"]) == {"daily": 500}
    assert reveal(protector, CARD, "d1", "country", doc["country"]) == "GB"


def test_randomized_vs_deterministic(keys):
    protector = ring(keys)
    assert protect(protector, CARD, "d1", "number", "1") != protect(protector, CARD, "d1", "number", "1")
    assert protect(protector, CARD, "d1", "country", "GB") == protect(protector, CARD, "d2", "country", "GB")
    assert protect(protector, CARD, "d1", "email", "a@b.c") == protect(protector, CARD, "d2", "email", "a@b.c")
    # bound to type and property: the same value elsewhere looks different
    assert protect(protector, CARD, "d1", "country", "GB") != protect(protector, OTHER, "d1", "country", "GB")


def test_ciphertexts_cannot_move_between_documents_properties_types_or_deployments(keys):
    protector = ring(keys)
    number = protect(protector, CARD, "d1", "number", "4111")
    with pytest.raises(IntegrityViolation):
        reveal(protector, CARD, "d2", "number", number)  # another document
    with pytest.raises(IntegrityViolation):
        reveal(protector, CARD, "d1", "cvv", number)  # another property
    country = protect(protector, CARD, "d1", "country", "GB")
    with pytest.raises(IntegrityViolation):
        reveal(protector, OTHER, "d1", "country", country)  # another type
    elsewhere = ring(keys, "invoices")  # same keysets, another database
    for name, value in (("number", number), ("country", country)):
        with pytest.raises(IntegrityViolation, match="does not decrypt"):
            reveal(elsewhere, CARD, "d1", name, value)
    assert protect(elsewhere, CARD, "d1", "country", "GB") != country


def test_signature_covers_everything_but_revision_fields(keys):
    protector = ring(keys)
    doc = card(protector)
    protector.check_signature({**doc, "_conflicts": ["1-y"], "_revisions": {"start": 1, "ids": []}})
    for tampered in (
        {**doc, "holder": "Eve"},
        {**doc, "_id": "d2"},
        {**doc, "type": "card_v1.1"},
        {**doc, "meta": {**doc["meta"], "created_at": "u"}},
        {**doc, "meta": {**doc["meta"], "deleted_at": "u"}},
        {**doc, "extra": 1},
        {k: v for k, v in doc.items() if k != "holder"},
        {**doc, "sig": {**doc["sig"], "gen": 2}, "_rev": "2-b"},  # the generation is signed too
        {**doc, "sig": {**doc["sig"], "v": 3}},
        {**doc, "sig": {**doc["sig"], "v": [2]}},
        {**doc, "sig": {**doc["sig"], "v": "2"}},
        {**doc, "sig": {**doc["sig"], "gen": "1"}},
        {**doc, "sig": {k: v for k, v in doc["sig"].items() if k != "gen"}},
    ):
        with pytest.raises(IntegrityViolation):
            protector.check_signature(tampered)
    with pytest.raises(IntegrityViolation, match="no signature"):
        protector.check_signature({k: v for k, v in doc.items() if k != "sig"})


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


PRIMARY = object()  # stands for the keyring's primary signing key id


@pytest.mark.parametrize(
    "hostile",
    [
        {"_id": "x", "sig": []},
        {"_id": "x", "sig": {"kid": True, "mac": "AAAA"}},
        {"_id": "x", "sig": {"kid": PRIMARY, "mac": "not base64 !"}},
        {"_id": "x", "sig": {"kid": PRIMARY, "mac": ""}},
        {"_id": "x", "_rev": 7, "meta": [], "type": {}, "sig": {"v": 2, "kid": PRIMARY, "gen": 1, "mac": "AAAA"}},
        {"sig": {"kid": PRIMARY, "mac": "AAAA"}, "deep": nested(400)},
    ],
    ids=["sig a list", "kid a boolean", "mac not base64", "mac empty", "odd shapes", "no id, deep"],
)
def test_whatever_the_stored_bytes_verification_raises_integrity_violation_only(keys, hostile):
    protector = ring(keys)
    if isinstance(hostile["sig"], dict) and hostile["sig"]["kid"] is PRIMARY:
        hostile = {**hostile, "sig": {**hostile["sig"], "kid": protector.signing.primary}}
    with pytest.raises(IntegrityViolation):
        protector.check_signature(hostile)


def test_a_signed_body_holds_only_at_the_generation_it_was_signed_for(keys):
    protector = ring(keys)
    doc = {**protector.sign({**card(protector), "holder": "Bea"}, 4), "_rev": "4-b"}
    protector.check_signature(doc)
    for rev in ("5-c", "9-d", "3-e", None, "x"):  # written over a newer revision; an older one; none
        moved = {**doc, "_rev": rev} if rev else {k: v for k, v in doc.items() if k != "_rev"}
        with pytest.raises(IntegrityViolation, match="signed for revision generation 4"):
            protector.check_signature(moved)


def test_a_document_copied_to_another_deployment_fails(keys):
    doc = card(ring(keys, "orders"))
    with pytest.raises(IntegrityViolation, match="signature does not match"):
        ring(keys, "invoices").check_signature(doc)
    ring(keys, "orders").check_signature(doc)


def test_version_1_documents_verify_until_refused_and_are_not_current(keys):
    protector = ring(keys)
    old = v1.signed(
        protector,
        {
            "_id": "d1",
            "_rev": "7-a",  # v1 knows no generation
            "type": "card_v1.0",
            "meta": {},
            "number": v1.encrypted(protector, CARD.slot("number", "d1"), "4111"),
            "country": v1.deterministic(protector, CARD.slot("country", "d1"), "GB"),
        },
    )
    protector.check_signature(old)
    assert set(old["sig"]) == {"kid", "mac"} and not protector.is_current(old)
    assert reveal(protector, CARD, "d1", "number", old["number"]) == "4111"
    assert not is_current(protector, CARD, "number", old["number"])
    assert not is_current(protector, CARD, "country", old["country"])
    assert old["country"] in lookup_values(protector, CARD, "country", "GB")  # still found by queries
    assert len(lookup_values(protector, CARD, "country", "GB")) == 2  # the v2 form and the v1 form

    strict = ring(keys, accept_v1=False)
    with pytest.raises(IntegrityViolation, match="version 1 signature, refused"):
        strict.check_signature(old)
    with pytest.raises(IntegrityViolation, match="version 1 ciphertext, refused"):
        reveal(strict, CARD, "d1", "number", old["number"])
    assert lookup_values(strict, CARD, "country", "GB") == [protect(strict, CARD, "d9", "country", "GB")]
    with pytest.raises(IntegrityViolation):
        protector.check_signature({**old, "number": v1.encrypted(protector, CARD.slot("number", "d1"), "5555")})


def test_canonical_json_is_key_order_independent():
    assert canonical({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == canonical({"a": {"c": "é", "d": [1, 2]}, "b": 1})
    assert canonical({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (nested(MAX_DEPTH + 1), "nested more than 250 levels"),
        (nested(5000), "nested more than 250 levels"),  # deeper than Python's recursion limit
        ([float("inf")], "not finite"),
        ({"n": 2**70}, "beyond 64 bits"),
        ({1: "a"}, "key is not a string"),
        ({"s": {1, 2}}, "not encodable"),
    ],
    ids=["251 deep", "5000 deep", "infinity", "bigint", "int key", "set"],
)
def test_values_without_a_canonical_form_raise_not_canonical_only(value, why):
    with pytest.raises(NotCanonical, match=why):
        canonical(value)


@pytest.mark.parametrize("depth", [255, 300, 1000, 5000])
def test_a_stored_document_nested_too_deeply_is_an_integrity_violation(keys, depth):
    protector = ring(keys)
    doc = {**card(protector), "limits": nested(depth)}
    with pytest.raises(IntegrityViolation, match="no canonical form: nested more than 250 levels"):
        protector.check_signature(doc)
    assert len(canonical(nested(MAX_DEPTH))) > MAX_DEPTH  # as deep as allowed: encodes


def test_integral_floats_sign_like_integers(keys):
    """A server may store 2.0 and answer 2 (pouchdb-server does): the signature must hold."""
    protector = ring(keys)
    body = {"_id": "d", "type": "card_v1.0", "meta": {}, "limits": {"daily": 2.0, "rate": 0.5}}
    doc = {**protector.sign(body, 1), "_rev": "1-a"}
    protector.check_signature({**doc, "limits": {"daily": 2, "rate": 0.5}})
    with pytest.raises(IntegrityViolation):
        protector.check_signature({**doc, "limits": {"daily": 2, "rate": 0.25}})


def test_two_phase_rotation_keeps_every_sidecar_reading(keys):
    old_ring = ring(keys)  # a sidecar not restarted since before the rotation
    old_doc = card(old_ring)
    old_kids = {p: keys.load(p).keyset_info().primary_key_id for p in ("encryption", "signing", "deterministic")}
    new_kids = {purpose: keys.rotate(purpose) for purpose in ("signing", "encryption", "deterministic", "lookup")}
    rotated = ring(keys)  # restarted with the rotated keysets: the new keys enabled, not primary
    assert rotated.signing.status[new_kids["signing"]] == "ENABLED"
    assert rotated.signing.primary == old_kids["signing"] and rotated.encryption.primary == old_kids["encryption"]
    written = card(rotated, "d2")  # still under the old primaries: the old sidecar reads it
    old_ring.check_signature(written)
    assert reveal(old_ring, CARD, "d2", "number", written["number"]) == "4111111111111111"
    assert len(lookup_values(rotated, CARD, "email", "ada@example.com")) == 2  # lookups under both keys

    for purpose, kid in new_kids.items():
        keys.promote(purpose, kid)
    promoted = ring(keys)
    assert promoted.signing.primary == new_kids["signing"]
    new_doc = card(promoted, "d3")
    assert new_doc["sig"]["kid"] == new_kids["signing"]
    assert new_doc["number"].startswith(f"aead2:{new_kids['encryption']}:")
    promoted.check_signature(old_doc)
    assert not is_current(promoted, CARD, "number", old_doc["number"])
    # the sidecar that never loaded the new keys: unavailable (retryable), never tampering
    with pytest.raises(KeyUnavailable) as caught:
        old_ring.check_signature(new_doc)
    assert (caught.value.purpose, caught.value.key_id) == ("signing", new_kids["signing"])
    with pytest.raises(KeyUnavailable):
        reveal(old_ring, CARD, "d3", "number", new_doc["number"])

    keys.set_status("encryption", old_kids["encryption"], "DISABLED")
    keys.set_status("signing", old_kids["signing"], "DISABLED")
    disabled = ring(keys)
    with pytest.raises(KeyUnavailable):
        disabled.check_signature(old_doc)
    with pytest.raises(KeyUnavailable):
        reveal(disabled, CARD, "d1", "number", old_doc["number"])
    disabled.check_signature(new_doc)
    with pytest.raises(KeysetError, match="primary"):
        keys.set_status("encryption", disabled.encryption.primary, "DISABLED")
    with pytest.raises(KeysetError, match="disabled; enable it first"):
        keys.promote("encryption", old_kids["encryption"])
    with pytest.raises(KeysetError, match="no key 12345"):
        keys.promote("encryption", 12345)


def test_signed_by_a_key_the_keyset_lacks_is_unavailable_not_tampering(keys, tmp_path):
    stranger = KeysDir(tmp_path / "stranger")
    stranger.create()
    with pytest.raises(KeyUnavailable, match="signing key"):
        ring(keys).check_signature(card(ring(stranger)))


def test_keysets_on_disk(keys, tmp_path):
    assert sorted(p.name for p in keys.directory.iterdir()) == [
        "deterministic.json",
        "encryption.json",
        "lookup.json",
        "signing.json",
    ]
    assert all(oct(os.stat(p).st_mode & 0o777) == "0o600" for p in keys.directory.iterdir())
    with pytest.raises(KeysetError, match="refusing to overwrite"):
        keys.create()
    listed = keys.list()
    assert {i.purpose for i in listed} == {"signing", "encryption", "deterministic", "lookup"}
    assert all(i.primary and i.status == "ENABLED" for i in listed)
    (keys.directory / "lookup.json").write_text((keys.directory / "signing.json").read_text())
    with pytest.raises(KeysetError, match="lookup keyset must hold HmacPrfKey"):
        ring(keys)


def test_keysets_others_could_replace_are_refused(keys):
    ring(keys)
    signing = keys.path("signing")
    signing.chmod(0o620)
    with pytest.raises(KeysetError, match=f"{signing}: writable by group or others .*chmod go-w"):
        ring(keys)
    signing.chmod(0o600)
    keys.directory.chmod(0o777)
    with pytest.raises(KeysetError, match=f"{keys.directory}: writable by group or others"):
        ring(keys)
    keys.directory.chmod(0o755)  # readable by others is fine: only writing matters
    ring(keys)  # (files of other users, and the whole secret-file rule: test_secret_files.py)


def test_keysets_encrypted_under_a_kek(tmp_path):
    kek_text = new_kek()
    keys = KeysDir(tmp_path / "k", kek_from(None, {"DATA_SERVICE_KEK": kek_text}))
    keys.create()
    on_disk = (tmp_path / "k" / "encryption.json").read_text()
    assert "encryptedKeyset" in on_disk and '"keyData"' not in on_disk  # no key material in clear
    ring(keys).check_signature(card(ring(keys)))
    with pytest.raises(KeysetError, match="encrypted; supply the key-encryption key"):
        ring(KeysDir(tmp_path / "k"))
    other = KeysDir(tmp_path / "k", kek_from(None, {"DATA_SERVICE_KEK": new_kek()}))
    with pytest.raises(KeysetError, match="not a usable Tink keyset"):
        ring(other)


def test_with_a_kek_a_cleartext_keyset_in_place_of_an_encrypted_one_is_refused(tmp_path):
    keys = KeysDir(tmp_path / "k", kek_from(None, {"DATA_SERVICE_KEK": new_kek()}))
    keys.create()
    forger = KeysDir(tmp_path / "forger")
    forger.create()
    keys.path("signing").write_text(forger.path("signing").read_text())  # whoever can write the directory
    with pytest.raises(KeysetError, match=f"{keys.path('signing')}: a cleartext keyset, but a key-encryption key"):
        ring(keys)
