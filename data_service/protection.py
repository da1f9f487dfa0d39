"""Protected properties and document signatures (pure: keys in, values out).

Stored forms (``<kid>`` is the Tink key id that produced the value, so rotation works):

==========================  =====================================================
``bcrypt``                  the bcrypt string ``$2b$<cost>$...`` (verify only)
``sha3-512``                ``sha3:<kid>:<b64url HMAC-SHA3-512(K, type NUL prop NUL value)>``
                            where K = PRF_kid("data-service/lookup/sha3-512/v1", 64 bytes)
                            from the ``lookup`` keyset (Tink has no SHA-3 HMAC; its PRF
                            derives the key, Python's hmac+sha3_512 computes the hash)
``encrypt``                 ``aead:<kid>:<b64url AES256-GCM(canonical JSON of value)>``,
                            associated data ``type NUL prop NUL document id``
``encrypt-deterministic``   ``daead:<kid>:<b64url AES256-SIV(canonical JSON of value)>``,
                            associated data ``type NUL prop``. Leaks equality: equal
                            values of one property look equal in the database.
==========================  =====================================================

Signature: ``sig = {"kid": <signing key id>, "mac": <b64url tag>}``, a Tink HMAC over
``b"data-service/document/v1\\n" + canonical(doc)`` where ``doc`` is the whole stored
document except ``_rev``, ``_conflicts``, ``_deleted_conflicts``, ``_revisions`` and
``sig``, plus ``"sig": {"kid": <kid>}``. Canonical JSON: UTF-8, object keys sorted
by code point, no insignificant whitespace (orjson ``OPT_SORT_KEYS``), floats with an
integral value written as integers (``2.0`` → ``2``). It covers
``_id``, so a signed body copied to another id fails, and every stored value, so
swapped ciphertexts fail too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import bcrypt
import orjson
import tink
from tink import aead, daead, mac, prf, secret_key_access

from .keys import KeysDir
from .models import ModelType

SIGNATURE_DOMAIN = b"data-service/document/v1\n"
UNSIGNED = frozenset({"_rev", "_conflicts", "_deleted_conflicts", "_revisions", "sig"})
LOOKUP_INFO = b"data-service/lookup/sha3-512/v1"
CURSOR_AD = b"data-service/cursor/v1"


class IntegrityViolation(Exception):
    """A stored document failed its signature check (edited outside the service)."""

    def __init__(self, docid: str, reason: str) -> None:
        super().__init__(f"{docid}: {reason}")
        self.docid, self.reason = docid, reason


class KeyUnavailable(Exception):
    """A value or signature was made with a key that is disabled or gone."""

    def __init__(self, purpose: str, key_id: int) -> None:
        super().__init__(f"{purpose} key {key_id} is not enabled")
        self.purpose, self.key_id = purpose, key_id


def canonical(value: Any) -> bytes:
    """UTF-8 JSON, keys sorted by code point, no whitespace, integral floats as integers:
    a stored ``2.0`` may come back as ``2`` (pouchdb-server does), so they must sign alike."""
    return orjson.dumps(_integral(value), option=orjson.OPT_SORT_KEYS)


def _integral(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tink_kid(ciphertext: bytes) -> int:
    """The key id in a Tink (TINK output prefix) ciphertext or tag."""
    return int.from_bytes(ciphertext[1:5], "big")


@dataclass(frozen=True)
class Keyset:
    """One purpose's keyset: the primitive, the primary id and each key's status."""

    primitive: Any
    primary: int
    status: dict[int, str]

    @property
    def enabled(self) -> list[int]:
        return [kid for kid, status in self.status.items() if status == "ENABLED"]

    def check(self, purpose: str, kid: int) -> None:
        if self.status.get(kid) != "ENABLED":
            raise KeyUnavailable(purpose, kid)


def _keyset(handle: tink.KeysetHandle, primitive_class) -> Keyset:
    info = handle.keyset_info()
    names = {1: "ENABLED", 2: "DISABLED", 3: "DESTROYED"}
    return Keyset(handle.primitive(primitive_class), info.primary_key_id,
                  {k.key_id: names.get(k.status, "UNKNOWN") for k in info.key_info})


def _single_key_daeads(handle: tink.KeysetHandle) -> dict[int, daead.DeterministicAead]:
    """A DAEAD per enabled key (Tink encrypts with the primary only; lookups need all)."""
    keyset = json.loads(tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN))
    return {
        key["keyId"]: tink.json_proto_keyset_format.parse(
            json.dumps({"primaryKeyId": key["keyId"], "key": [key]}), secret_key_access.TOKEN,
        ).primitive(daead.DeterministicAead)
        for key in keyset["key"] if key["status"] == "ENABLED"
    }


class Protector:
    """Protects, reveals and signs with the four keysets of a keys directory."""

    def __init__(self, keys: KeysDir) -> None:
        self.signing = _keyset(keys.load("signing"), mac.Mac)
        self.encryption = _keyset(keys.load("encryption"), aead.Aead)
        deterministic = keys.load("deterministic")
        self.deterministic = _keyset(deterministic, daead.DeterministicAead)
        self._daead_by_key = _single_key_daeads(deterministic)
        lookup = keys.load("lookup")
        self.lookup = _keyset(lookup, prf.PrfSet)
        self._lookup_keys = {kid: p.compute(LOOKUP_INFO, 64)
                             for kid, p in self.lookup.primitive.all().items()}

    # -- signatures -------------------------------------------------------------

    @staticmethod
    def _payload(doc: dict, kid: int) -> bytes:
        body = {k: v for k, v in doc.items() if k not in UNSIGNED}
        body["sig"] = {"kid": kid}
        return SIGNATURE_DOMAIN + canonical(body)

    def sign(self, doc: dict) -> dict:
        kid = self.signing.primary
        tag = self.signing.primitive.compute_mac(self._payload(doc, kid))
        return {**doc, "sig": {"kid": kid, "mac": _b64(tag)}}

    def verify(self, doc: dict) -> None:
        """Raise IntegrityViolation (or KeyUnavailable for a disabled signing key)."""
        docid = str(doc.get("_id"))
        sig = doc.get("sig")
        if not isinstance(sig, dict) or not isinstance(sig.get("kid"), int) or not isinstance(sig.get("mac"), str):
            raise IntegrityViolation(docid, "no signature")
        kid = sig["kid"]
        if kid not in self.signing.status:
            raise IntegrityViolation(docid, "signed by a key not in the keyset")
        self.signing.check("signing", kid)
        try:
            tag = _unb64(sig["mac"])
            if _tink_kid(tag) != kid:
                raise ValueError("key id mismatch")
            self.signing.primitive.verify_mac(tag, self._payload(doc, kid))
        except (ValueError, tink.TinkError):
            raise IntegrityViolation(docid, "signature does not match the content") from None

    # -- opaque tokens ------------------------------------------------------------

    def seal(self, payload: Any) -> str:
        """An opaque, authenticated, encrypted token (pagination cursors)."""
        return _b64(self.encryption.primitive.encrypt(canonical(payload), CURSOR_AD))

    def unseal(self, token: str) -> Any:
        """The payload of a ``seal`` token; ValueError if forged, edited or garbled."""
        try:
            return orjson.loads(self.encryption.primitive.decrypt(_unb64(token), CURSOR_AD))
        except (ValueError, tink.TinkError):
            raise ValueError("not a valid token") from None

    # -- property values ----------------------------------------------------------

    def protect(self, model: ModelType, docid: str, name: str, value: Any) -> Any:
        """The stored form of a non-bcrypt value (bcrypt: ``hash_password``)."""
        protection = model.properties[name].protection
        if protection == "plain":
            return value
        if protection == "sha3-512":
            return self._lookup_hash(self.lookup.primary, model, name, value)
        if protection == "encrypt":
            ct = self.encryption.primitive.encrypt(canonical(value), _ad(model, name, docid))
            return f"aead:{_tink_kid(ct)}:{_b64(ct)}"
        if protection == "encrypt-deterministic":
            return self._deterministic(self.deterministic.primitive, model, name, value)
        raise ValueError(f"{protection} values are hashed with hash_password")

    def reveal(self, model: ModelType, docid: str, name: str, stored: Any) -> Any:
        """The caller's value of a readable property (KeyUnavailable if its key is disabled)."""
        protection = model.properties[name].protection
        if protection == "plain":
            return stored
        try:
            scheme, kid, ct = _parse(stored)
            if protection == "encrypt" and scheme == "aead":
                self.encryption.check("encryption", kid)
                return orjson.loads(self.encryption.primitive.decrypt(ct, _ad(model, name, docid)))
            if protection == "encrypt-deterministic" and scheme == "daead":
                self.deterministic.check("deterministic", kid)
                return orjson.loads(self.deterministic.primitive.decrypt_deterministically(ct, _ad(model, name)))
        except (ValueError, tink.TinkError):
            pass
        raise IntegrityViolation(docid, f"property {name!r} does not decrypt")

    def lookup_values(self, model: ModelType, name: str, value: Any) -> list[str]:
        """The stored forms ``value`` may have under every enabled key (for view ``keys``)."""
        protection = model.properties[name].protection
        if protection == "sha3-512":
            return [self._lookup_hash(kid, model, name, value) for kid in self.lookup.enabled]
        if protection == "encrypt-deterministic":
            return [self._deterministic(p, model, name, value) for p in self._daead_by_key.values()]
        return [value]

    def matches_hash(self, model: ModelType, name: str, candidate: str, stored: str) -> bool:
        """Constant-time check of a candidate against a ``sha3-512`` stored value."""
        _, kid, _ = _parse(stored)
        self.lookup.check("lookup", kid)
        return hmac.compare_digest(self._lookup_hash(kid, model, name, candidate), stored)

    def is_current(self, model: ModelType, name: str, stored: Any) -> bool:
        """Whether a stored value is under its purpose's primary key (re-encryption skips it)."""
        protection = model.properties[name].protection
        if protection in ("plain", "bcrypt"):
            return True
        scheme, kid, _ = _parse(stored)
        primary = {"sha3": self.lookup, "aead": self.encryption, "daead": self.deterministic}[scheme].primary
        return kid == primary

    def _lookup_hash(self, kid: int, model: ModelType, name: str, value: str) -> str:
        key = self._lookup_keys.get(kid)
        if key is None:
            raise KeyUnavailable("lookup", kid)
        digest = hmac.new(key, f"{model.name}\0{name}\0{value}".encode(), hashlib.sha3_512).digest()
        return f"sha3:{kid}:{_b64(digest)}"

    @staticmethod
    def _deterministic(primitive, model: ModelType, name: str, value: Any) -> str:
        ct = primitive.encrypt_deterministically(canonical(value), _ad(model, name))
        return f"daead:{_tink_kid(ct)}:{_b64(ct)}"


def _ad(model: ModelType, name: str, docid: str | None = None) -> bytes:
    parts = [model.name, name] + ([docid] if docid is not None else [])
    return "\0".join(parts).encode()


def _parse(stored: Any) -> tuple[str, int, bytes]:
    """``scheme:kid:b64`` → (scheme, kid, bytes); ValueError for anything else."""
    try:
        scheme, kid, data = stored.split(":", 2)
        return scheme, int(kid), _unb64(data)
    except (AttributeError, ValueError):
        raise ValueError("not a protected value") from None


def hash_password(value: str, cost: int) -> str:
    """bcrypt; slow on purpose — call it from a thread pool, never on the event loop."""
    return bcrypt.hashpw(value.encode(), bcrypt.gensalt(cost)).decode()


def check_password(candidate: str, stored: str) -> bool:
    """bcrypt's own constant-time comparison; thread pool as for ``hash_password``."""
    try:
        return bcrypt.checkpw(candidate.encode(), stored.encode())
    except ValueError:
        return False
