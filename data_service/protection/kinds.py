"""Protection kinds: how each class of property is stored, read, queried and re-keyed.

A kind's traits and operations live together in one class, and ``KINDS`` is the
registry the models file's ``protection:`` keyword names: adding a kind touches this
module only. Stored forms (``<kid>`` is the Tink key id that made the value, so
rotation works; ``D`` is the keyring's deployment: the database or its deployment id):

==========================  =====================================================
``plain``                   the value
``bcrypt``                  ``$2b$<cost>$...`` (verify only; slow: hashed and checked
                            in a thread pool, never on the event loop)
``sha3-512``                ``sha3:<kid>:<b64url HMAC-SHA3-512(K, type NUL prop NUL value)>``
                            where K = PRF_kid("data-service/lookup/sha3-512/v1", 64 bytes)
                            from the ``lookup`` keyset (Tink has no SHA-3 HMAC; its PRF
                            derives the key, Python's hmac+sha3_512 computes the hash)
``encrypt``                 ``aead2:<kid>:<b64url AES256-GCM(canonical JSON of value)>``,
                            associated data ``type NUL prop NUL document id NUL D``
``encrypt-deterministic``   ``daead2:<kid>:<b64url AES256-SIV(canonical JSON of value)>``,
                            associated data ``type NUL prop NUL D``. Leaks equality: equal
                            values of one property look equal in the database.
==========================  =====================================================

Version 1 ciphertexts (``aead:``/``daead:``, associated data without ``D``) are what
earlier releases wrote: they are read (and looked up) while the keyring accepts v1,
and ``reencrypt`` rewrites them. Lookup hashes name no deployment: they cannot be
re-keyed without their plaintext, and inside a signed document a copied one fails
the signature anyway.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, ClassVar

import bcrypt
import orjson
import tink

from ..canonical import canonical
from .keyring import IntegrityViolation, Keyring, Keyset, b64, tink_kid, unb64


@dataclass(frozen=True)
class Slot:
    """Where a value lives: what associated data and keyed hashes bind it to."""

    type_name: str
    prop: str
    docid: str
    bcrypt_cost: int = 12

    def bound(self, with_docid: bool, deployment: str | None) -> bytes:
        """Associated data; ``deployment`` None for version 1 ciphertexts."""
        parts = [self.type_name, self.prop] + ([self.docid] if with_docid else [])
        return "\0".join(parts + ([deployment] if deployment is not None else [])).encode()


class Kind:
    """A protection kind. ``stored`` values come from the database: anything malformed
    is an IntegrityViolation (of the slot's document), never another error."""

    name: ClassVar[str]
    readable: ClassVar[bool] = True  # returned to callers in clear
    confidential: ClassVar[bool] = True  # never echoed in error messages or logs
    queryable: ClassVar[bool] = False  # may be indexed: one stored form per value and key
    equality_only: ClassVar[bool] = False  # indexed values have no meaningful order
    strings_only: ClassVar[bool] = False  # compared as strings (hashes)
    slow: ClassVar[bool] = False  # protect and check in a thread pool (``Bcrypt``)
    max_bytes: ClassVar[int | None] = None  # longest value (UTF-8) it can protect
    scheme: ClassVar[str] = ""  # the prefix of its current stored form (keyed kinds)

    def protect(self, keys: Keyring, slot: Slot, value: Any) -> Any:
        raise NotImplementedError

    def reveal(self, keys: Keyring, slot: Slot, stored: Any) -> Any:
        """The caller's value of a readable property."""
        raise NotImplementedError(f"{self.name} values cannot be revealed")

    def holds(self, keys: Keyring, slot: Slot, stored: Any, value: Any) -> bool:
        """Whether ``stored`` is the stored form of ``value``: a candidate checked against a
        hash, or an unchanged value whose stored form is kept as it is (no new ciphertext)."""
        try:
            return canonical(self.reveal(keys, slot, stored)) == canonical(value)
        except IntegrityViolation:
            return False

    def lookup_values(self, keys: Keyring, slot: Slot, value: Any) -> list:
        """The stored forms ``value`` may have in an index: one per enabled key version."""
        return [self.protect(keys, slot, value)]

    def keyset(self, keys: Keyring) -> Keyset | None:
        """The keyset its stored forms are made with (None: no keys)."""
        return None

    def is_current(self, keys: Keyring, slot: Slot, stored: Any) -> bool:
        """Whether ``stored`` is of the current format, made with its keyset's primary key
        (re-keying skips it)."""
        keyset = self.keyset(keys)
        return keyset is None or _parse(stored, slot)[:2] == (self.scheme, keyset.primary)


class Plain(Kind):
    name = "plain"
    confidential = False
    queryable = True

    def protect(self, keys: Keyring, slot: Slot, value: Any) -> Any:
        return value

    def reveal(self, keys: Keyring, slot: Slot, stored: Any) -> Any:
        return stored


class Bcrypt(Kind):
    name = "bcrypt"
    readable = False
    strings_only = True
    slow = True
    max_bytes = 72  # bcrypt ignores the rest: refused rather than silently truncated

    def protect(self, keys: Keyring, slot: Slot, value: Any) -> str:
        """bcrypt; slow on purpose — call it from a thread pool, never on the event loop."""
        return bcrypt.hashpw(value.encode(), bcrypt.gensalt(slot.bcrypt_cost)).decode()

    def holds(self, keys: Keyring, slot: Slot, stored: Any, value: Any) -> bool:
        """bcrypt's own constant-time comparison; thread pool as for ``protect``."""
        try:
            return bcrypt.checkpw(value.encode(), stored.encode())
        except (AttributeError, ValueError):
            return False


class Sha3(Kind):
    name = "sha3-512"
    scheme = "sha3"
    readable = False
    queryable = True
    equality_only = True
    strings_only = True

    def protect(self, keys: Keyring, slot: Slot, value: Any) -> str:
        return self._hash(keys, keys.lookup.primary, slot, value)

    def holds(self, keys: Keyring, slot: Slot, stored: Any, value: Any) -> bool:
        """Constant-time check of a candidate against a stored hash."""
        _, kid, _ = _parse(stored, slot)
        keys.lookup.check(kid)
        return hmac.compare_digest(self._hash(keys, kid, slot, value), stored)

    def lookup_values(self, keys: Keyring, slot: Slot, value: Any) -> list:
        return [self._hash(keys, kid, slot, value) for kid in keys.lookup.enabled]

    def keyset(self, keys: Keyring) -> Keyset:
        return keys.lookup

    @staticmethod
    def _hash(keys: Keyring, kid: int, slot: Slot, value: str) -> str:
        message = f"{slot.type_name}\0{slot.prop}\0{value}".encode()
        return f"sha3:{kid}:{b64(hmac.new(keys.lookup_key(kid), message, hashlib.sha3_512).digest())}"


class Encrypt(Kind):
    name = "encrypt"
    scheme, legacy = "aead2", "aead"

    def protect(self, keys: Keyring, slot: Slot, value: Any) -> str:
        ct = keys.encryption.primitive.encrypt(canonical(value), slot.bound(True, keys.deployment))
        return f"{self.scheme}:{tink_kid(ct)}:{b64(ct)}"

    def reveal(self, keys: Keyring, slot: Slot, stored: Any) -> Any:
        scheme, kid, ct = _parse(stored, slot)
        ad = _associated(keys, slot, scheme, self, with_docid=True)
        keys.encryption.check(kid)
        try:
            return orjson.loads(keys.encryption.primitive.decrypt(ct, ad))
        except (ValueError, tink.TinkError):
            raise IntegrityViolation(slot.docid, f"property {slot.prop!r} does not decrypt") from None

    def keyset(self, keys: Keyring) -> Keyset:
        return keys.encryption


class EncryptDeterministic(Kind):
    name = "encrypt-deterministic"
    queryable = True
    equality_only = True
    scheme, legacy = "daead2", "daead"

    def protect(self, keys: Keyring, slot: Slot, value: Any) -> str:
        return self._encrypt(keys.deterministic.primitive, slot.bound(False, keys.deployment), value, self.scheme)

    def reveal(self, keys: Keyring, slot: Slot, stored: Any) -> Any:
        scheme, kid, ct = _parse(stored, slot)
        ad = _associated(keys, slot, scheme, self, with_docid=False)
        keys.deterministic.check(kid)
        try:
            return orjson.loads(keys.deterministic.primitive.decrypt_deterministically(ct, ad))
        except (ValueError, tink.TinkError):
            raise IntegrityViolation(slot.docid, f"property {slot.prop!r} does not decrypt") from None

    def lookup_values(self, keys: Keyring, slot: Slot, value: Any) -> list:
        """Under every enabled key; version 1 forms too while the keyring accepts them."""
        forms = [(self.scheme, slot.bound(False, keys.deployment))]
        if keys.accept_v1:
            forms.append((self.legacy, slot.bound(False, None)))
        return [
            self._encrypt(primitive, ad, value, scheme) for scheme, ad in forms for primitive in keys.daeads.values()
        ]

    def keyset(self, keys: Keyring) -> Keyset:
        return keys.deterministic

    @staticmethod
    def _encrypt(primitive: Any, ad: bytes, value: Any, scheme: str) -> str:
        ct = primitive.encrypt_deterministically(canonical(value), ad)
        return f"{scheme}:{tink_kid(ct)}:{b64(ct)}"


def _associated(
    keys: Keyring, slot: Slot, scheme: str, kind: Encrypt | EncryptDeterministic, with_docid: bool
) -> bytes:
    """The associated data a stored ``scheme`` value was encrypted with."""
    if scheme == kind.scheme:
        return slot.bound(with_docid, keys.deployment)
    if scheme == kind.legacy and keys.accept_v1:
        return slot.bound(with_docid, None)
    if scheme == kind.legacy:
        raise IntegrityViolation(slot.docid, f"property {slot.prop!r} is a version 1 ciphertext, refused (--refuse-v1)")
    raise IntegrityViolation(slot.docid, f"property {slot.prop!r} is not a {kind.name} value")


def _parse(stored: Any, slot: Slot) -> tuple[str, int, bytes]:
    """``scheme:kid:b64`` → (scheme, kid, bytes)."""
    try:
        scheme, kid, data = stored.split(":", 2)
        return scheme, int(kid), unb64(data)
    except (AttributeError, ValueError):
        raise IntegrityViolation(slot.docid, f"property {slot.prop!r} is not a protected value") from None


KINDS: dict[str, Kind] = {kind.name: kind for kind in (Plain(), Bcrypt(), Sha3(), Encrypt(), EncryptDeterministic())}
