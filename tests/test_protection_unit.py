"""Keyrings, protection kinds and keysets without a database: stored forms, bindings,
signatures, rotation."""

from __future__ import annotations

import json
import os

import pytest

from data_service.canonical import canonical
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


def signed_card(protector: Keyring, docid: str = "d1") -> dict:
    values = {
        "holder": "Ada",
        "number": "4111111111111111",
        "cvv": "123",
        "country": "GB",
        "email": "ada@example.com",
        "limits": {"daily": 500},
    }
    props = {name: protect(protector, CARD, docid, name, value) for name, value in values.items()}
    return protector.sign({"_id": docid, "type": "card_v1.0", "meta": {"created_at": "t", "updated_at": "t"}, **props})


def test_stored_forms_name_their_key_and_hide_the_value(keys):
    protector = Keyring(keys)
    doc = signed_card(protector)
    raw = json.dumps(doc)
    for secret in ("4111111111111111", "ada@example.com", '"GB"', "daily"):
        assert secret not in raw
    assert doc["holder"] == "Ada"
    assert doc["number"].startswith(f"aead:{protector.encryption.primary}:")
    assert doc["country"].startswith(f"daead:{protector.deterministic.primary}:")
    assert doc["email"].startswith(f"sha3:{protector.lookup.primary}:") and len(doc["email"]) > 80
    assert reveal(protector, CARD, "d1", "limits", doc["limits"]) == {"daily": 500}
    assert reveal(protector, CARD, "d1", "country", doc["country"]) == "GB"


def test_randomized_vs_deterministic(keys):
    protector = Keyring(keys)
    assert protect(protector, CARD, "d1", "number", "1") != protect(protector, CARD, "d1", "number", "1")
    assert protect(protector, CARD, "d1", "country", "GB") == protect(protector, CARD, "d2", "country", "GB")
    assert protect(protector, CARD, "d1", "email", "a@b.c") == protect(protector, CARD, "d2", "email", "a@b.c")
    # bound to type and property: the same value elsewhere looks different
    assert protect(protector, CARD, "d1", "country", "GB") != protect(protector, OTHER, "d1", "country", "GB")


def test_ciphertexts_cannot_move_between_documents_or_properties(keys):
    protector = Keyring(keys)
    number = protect(protector, CARD, "d1", "number", "4111")
    with pytest.raises(IntegrityViolation):
        reveal(protector, CARD, "d2", "number", number)  # another document
    with pytest.raises(IntegrityViolation):
        reveal(protector, CARD, "d1", "cvv", number)  # another property
    country = protect(protector, CARD, "d1", "country", "GB")
    with pytest.raises(IntegrityViolation):
        reveal(protector, OTHER, "d1", "country", country)  # another type


def test_signature_covers_everything_but_revision_fields(keys):
    protector = Keyring(keys)
    doc = signed_card(protector)
    protector.verify({**doc, "_rev": "7-x", "_conflicts": ["6-y"], "_revisions": {"start": 7, "ids": []}})
    for tampered in (
        {**doc, "holder": "Eve"},
        {**doc, "_id": "d2"},
        {**doc, "type": "card_v1.1"},
        {**doc, "meta": {**doc["meta"], "created_at": "u"}},
        {**doc, "extra": 1},
        {k: v for k, v in doc.items() if k != "holder"},
        {**doc, "sig": {**doc["sig"], "kid": doc["sig"]["kid"] + 1}},
    ):
        with pytest.raises(IntegrityViolation):
            protector.verify(tampered)
    with pytest.raises(IntegrityViolation, match="no signature"):
        protector.verify({k: v for k, v in doc.items() if k != "sig"})


def test_canonical_json_is_key_order_independent():
    assert canonical({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == canonical({"a": {"c": "é", "d": [1, 2]}, "b": 1})
    assert canonical({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


def test_integral_floats_sign_like_integers(keys):
    """A server may store 2.0 and answer 2 (pouchdb-server does): the signature must hold."""
    protector = Keyring(keys)
    doc = protector.sign({"_id": "d", "type": "card_v1.0", "meta": {}, "limits": {"daily": 2.0, "rate": 0.5}})
    protector.verify({**doc, "limits": {"daily": 2, "rate": 0.5}})
    with pytest.raises(IntegrityViolation):
        protector.verify({**doc, "limits": {"daily": 2, "rate": 0.25}})


def test_rotation_keeps_old_values_readable_until_their_key_is_disabled(keys):
    before = Keyring(keys)
    old_doc = signed_card(before)
    old_kids = {p: keys.load(p).keyset_info().primary_key_id for p in ("encryption", "signing", "deterministic")}
    for purpose in ("signing", "encryption", "deterministic", "lookup"):
        keys.rotate(purpose)
    after = Keyring(keys)
    after.verify(old_doc)
    assert reveal(after, CARD, "d1", "number", old_doc["number"]) == "4111111111111111"
    assert not is_current(after, CARD, "number", old_doc["number"])
    # lookups find the value under every enabled key: the old and the new hash
    assert old_doc["email"] in lookup_values(after, CARD, "email", "ada@example.com")
    assert len(lookup_values(after, CARD, "country", "GB")) == 2
    new_doc = signed_card(after, "d2")
    assert is_current(after, CARD, "number", new_doc["number"]) and new_doc["sig"]["kid"] != old_doc["sig"]["kid"]

    keys.set_status("encryption", old_kids["encryption"], "DISABLED")
    keys.set_status("signing", old_kids["signing"], "DISABLED")
    disabled = Keyring(keys)
    with pytest.raises(KeyUnavailable) as caught:
        disabled.verify(old_doc)
    assert caught.value.purpose == "signing"
    with pytest.raises(KeyUnavailable):
        reveal(disabled, CARD, "d1", "number", old_doc["number"])
    disabled.verify(new_doc)
    with pytest.raises(KeysetError, match="primary"):
        keys.set_status("encryption", disabled.encryption.primary, "DISABLED")


def test_signed_by_a_foreign_keyset_is_an_integrity_violation(keys, tmp_path):
    stranger = KeysDir(tmp_path / "stranger")
    stranger.create()
    with pytest.raises(IntegrityViolation, match="not in the keyset"):
        Keyring(keys).verify(signed_card(Keyring(stranger)))


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
        Keyring(keys)


def test_keysets_encrypted_under_a_kek(tmp_path):
    kek_text = new_kek()
    keys = KeysDir(tmp_path / "k", kek_from(None, {"DATA_SERVICE_KEK": kek_text}))
    keys.create()
    on_disk = (tmp_path / "k" / "encryption.json").read_text()
    assert "encryptedKeyset" in on_disk and '"keyData"' not in on_disk  # no key material in clear
    Keyring(keys).verify(signed_card(Keyring(keys)))
    with pytest.raises(KeysetError, match="encrypted; supply the key-encryption key"):
        Keyring(KeysDir(tmp_path / "k"))
    other = KeysDir(tmp_path / "k", kek_from(None, {"DATA_SERVICE_KEK": new_kek()}))
    with pytest.raises(KeysetError, match="not a usable Tink keyset"):
        Keyring(other)
