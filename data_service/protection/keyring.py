"""The keysets of a keys directory, loaded: signatures and opaque tokens (pure: keys in).

Signature: ``sig = {"kid": <signing key id>, "mac": <b64url tag>}``, a Tink HMAC over
``b"data-service/document/v1\\n" + canonical(doc)`` where ``doc`` is the whole stored
document except the revision fields (``envelope.UNSIGNED``) and ``sig``, plus
``"sig": {"kid": <kid>}``. It covers ``_id``, so a signed body copied to another id
fails, and every stored value, so swapped ciphertexts fail too. Canonical JSON:
``canonical.canonical``.

Tokens (``seal``/``unseal``): authenticated, encrypted payloads for callers to hold
and hand back (pagination cursors).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import orjson
import tink
from tink import aead, daead, mac, prf, secret_key_access

from ..canonical import canonical
from ..envelope import UNSIGNED
from ..errors import ServiceError
from ..keys import KeysDir

SIGNATURE_DOMAIN = b"data-service/document/v1\n"
LOOKUP_INFO = b"data-service/lookup/sha3-512/v1"
CURSOR_AD = b"data-service/cursor/v1"
_STATUS = {1: "ENABLED", 2: "DISABLED", 3: "DESTROYED"}


class IntegrityViolation(ServiceError):
    """A stored document failed its check (edited outside the service)."""

    code = "integrity_violation"

    def __init__(self, docid: str, reason: str) -> None:
        super().__init__(f"{docid}: {reason}")
        self.docid, self.reason = docid, reason

    @property
    def detail(self) -> str:
        return f"document {self.docid} failed its signature check"


class KeyUnavailable(ServiceError):
    """A value or signature was made with a key that is disabled or gone."""

    code = "key_unavailable"

    def __init__(self, purpose: str, key_id: int) -> None:
        super().__init__(f"{purpose} key {key_id} is not enabled")
        self.purpose, self.key_id = purpose, key_id

    @property
    def detail(self) -> str:
        return f"needs {self.purpose} key {self.key_id}; run reencrypt before disabling keys"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tink_kid(ciphertext: bytes) -> int:
    """The key id in a Tink (TINK output prefix) ciphertext or tag."""
    return int.from_bytes(ciphertext[1:5], "big")


@dataclass(frozen=True)
class Keyset:
    """One purpose's keyset: the primitive, the primary id and each key's status."""

    purpose: str
    primitive: Any
    primary: int
    status: dict[int, str]

    @property
    def enabled(self) -> list[int]:
        return [kid for kid, status in self.status.items() if status == "ENABLED"]

    def check(self, kid: int) -> None:
        if self.status.get(kid) != "ENABLED":
            raise KeyUnavailable(self.purpose, kid)


def _keyset(purpose: str, handle: tink.KeysetHandle, primitive_class: Any) -> Keyset:
    info = handle.keyset_info()
    return Keyset(
        purpose,
        handle.primitive(primitive_class),
        info.primary_key_id,
        {k.key_id: _STATUS.get(k.status, "UNKNOWN") for k in info.key_info},
    )


def _single_key_daeads(handle: tink.KeysetHandle) -> dict[int, daead.DeterministicAead]:
    """A DAEAD per enabled key (Tink encrypts with the primary only; lookups need all)."""
    keyset = json.loads(tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN))
    return {
        key["keyId"]: tink.json_proto_keyset_format.parse(
            json.dumps({"primaryKeyId": key["keyId"], "key": [key]}),
            secret_key_access.TOKEN,
        ).primitive(daead.DeterministicAead)
        for key in keyset["key"]
        if key["status"] == "ENABLED"
    }


class Keyring:
    """The four keysets of a keys directory (see ``keys``), loaded once at startup."""

    def __init__(self, keys: KeysDir) -> None:
        self.signing = _keyset("signing", keys.load("signing"), mac.Mac)
        self.encryption = _keyset("encryption", keys.load("encryption"), aead.Aead)
        deterministic = keys.load("deterministic")
        self.deterministic = _keyset("deterministic", deterministic, daead.DeterministicAead)
        self.daeads = _single_key_daeads(deterministic)
        lookup = keys.load("lookup")
        self.lookup = _keyset("lookup", lookup, prf.PrfSet)
        self.lookup_keys = {kid: p.compute(LOOKUP_INFO, 64) for kid, p in self.lookup.primitive.all().items()}

    # -- signatures -------------------------------------------------------------

    @staticmethod
    def _payload(doc: dict, kid: int) -> bytes:
        body = {k: v for k, v in doc.items() if k not in UNSIGNED}
        body["sig"] = {"kid": kid}
        return SIGNATURE_DOMAIN + canonical(body)

    def sign(self, doc: dict) -> dict:
        kid = self.signing.primary
        tag = self.signing.primitive.compute_mac(self._payload(doc, kid))
        return {**doc, "sig": {"kid": kid, "mac": b64(tag)}}

    def verify(self, doc: dict) -> None:
        """Raise IntegrityViolation (or KeyUnavailable for a disabled signing key)."""
        docid = str(doc.get("_id"))
        sig = doc.get("sig")
        if not isinstance(sig, dict) or not isinstance(sig.get("kid"), int) or not isinstance(sig.get("mac"), str):
            raise IntegrityViolation(docid, "no signature")
        kid = sig["kid"]
        if kid not in self.signing.status:
            raise IntegrityViolation(docid, "signed by a key not in the keyset")
        self.signing.check(kid)
        try:
            tag = unb64(sig["mac"])
            if tink_kid(tag) != kid:
                raise ValueError("key id mismatch")
            self.signing.primitive.verify_mac(tag, self._payload(doc, kid))
        except (ValueError, tink.TinkError):
            raise IntegrityViolation(docid, "signature does not match the content") from None

    def signed_by_primary(self, doc: dict) -> bool:
        sig = doc.get("sig")
        return isinstance(sig, dict) and sig.get("kid") == self.signing.primary

    # -- opaque tokens ------------------------------------------------------------

    def seal(self, payload: Any) -> str:
        """An opaque, authenticated, encrypted token (pagination cursors)."""
        return b64(self.encryption.primitive.encrypt(canonical(payload), CURSOR_AD))

    def unseal(self, token: str) -> Any:
        """The payload of a ``seal`` token; ValueError if forged, edited or garbled."""
        try:
            return orjson.loads(self.encryption.primitive.decrypt(unb64(token), CURSOR_AD))
        except (ValueError, tink.TinkError):
            raise ValueError("not a valid token") from None

    # -- keyed hashes ---------------------------------------------------------------

    def lookup_key(self, kid: int) -> bytes:
        key = self.lookup_keys.get(kid)
        if key is None:
            raise KeyUnavailable("lookup", kid)
        return key
