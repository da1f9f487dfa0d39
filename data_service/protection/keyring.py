"""The keysets of a keys directory, loaded for one deployment: signatures and opaque
tokens (pure: keys in).

Signature (version 2): ``sig = {"v": 2, "kid": <signing key id>, "gen": <revision
generation>, "mac": <b64url tag>}``, a Tink HMAC over
``b"data-service/document/v2\\n" + canonical(doc)`` where ``doc`` is the whole stored
document except the revision fields (``envelope.UNSIGNED``) and ``sig``, plus
``"sig": {"v": 2, "kid": <kid>, "gen": <gen>, "deployment": <deployment>}``.

* It covers ``_id``, so a signed body copied to another id fails, and every stored
  value, so swapped ciphertexts fail too.
* ``gen`` is the generation of the revision the write creates (the ``N`` of CouchDB's
  ``N-hash``), checked against ``_rev`` on every read: an older signed body written
  over a newer revision, an undone soft delete or a hard-deleted document put back
  all land on a later generation than they were signed for.
* ``deployment`` (the database name, or ``serve --deployment-id``) is not stored: the
  verifier supplies its own, so a document copied into another database fails.

Version 1 (``{"kid", "mac"}``, domain ``data-service/document/v1``, no generation, no
deployment) is what earlier releases wrote: it verifies unless ``accept_v1`` is off
(``--refuse-v1``, once ``reencrypt`` has upgraded every document), because until then
an old v1 body can be put back undetected. Canonical JSON: ``canonical.canonical``.

A key id the keyset does not hold is ``KeyUnavailable`` (a newer sidecar may hold it:
see ``keys rotate``/``promote``), never an integrity violation.

Tokens (``seal``/``unseal``): authenticated, encrypted payloads for callers to hold
and hand back (pagination cursors), bound to the deployment.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import orjson
import tink
from tink import aead, daead, mac, prf, secret_key_access

from ..canonical import NotCanonical, canonical
from ..envelope import UNSIGNED
from ..errors import ServiceError
from ..keys import KeysDir
from ..problems import Code
from ..revisions import generation

SIGNATURE_DOMAINS = {1: b"data-service/document/v1\n", 2: b"data-service/document/v2\n"}
SIGNATURE_VERSION = 2
LOOKUP_INFO = b"data-service/lookup/sha3-512/v1"
CURSOR_AD = b"data-service/cursor/v2\n"
_STATUS = {1: "ENABLED", 2: "DISABLED", 3: "DESTROYED"}


class IntegrityViolation(ServiceError):
    """A stored document failed its check (edited outside the service)."""

    code = Code.INTEGRITY_VIOLATION

    def __init__(self, docid: str, reason: str) -> None:
        super().__init__(f"{docid}: {reason}")
        self.docid, self.reason = docid, reason

    @property
    def detail(self) -> str:
        return f"document {self.docid} failed its signature check"


class KeyUnavailable(ServiceError):
    """A value or signature was made with a key that is disabled, or that this keyset
    does not hold (yet: a sidecar not restarted since ``keys rotate``). Retryable, and
    never counted as tampering."""

    code = Code.KEY_UNAVAILABLE

    def __init__(self, purpose: str, key_id: int) -> None:
        super().__init__(f"{purpose} key {key_id} is not enabled")
        self.purpose, self.key_id = purpose, key_id

    @property
    def detail(self) -> str:
        return (
            f"needs {self.purpose} key {self.key_id}, which this sidecar does not have enabled "
            "(restart it with the current keysets; run reencrypt before disabling keys)"
        )


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
    """The four keysets of a keys directory (see ``keys``), loaded at startup (and again
    by ``adopt`` when the files change: ``reloads``), for one ``deployment`` (what
    signatures and associated data name: the database, or an explicit deployment id
    shared by replicas). ``accept_v1``: whether version 1 signatures and ciphertexts
    (which name no deployment or generation) are read."""

    def __init__(self, keys: KeysDir, deployment: str, *, accept_v1: bool = True) -> None:
        self.deployment, self.accept_v1 = deployment, accept_v1
        self.signing = _keyset("signing", keys.load("signing"), mac.Mac)
        self.encryption = _keyset("encryption", keys.load("encryption"), aead.Aead)
        deterministic = keys.load("deterministic")
        self.deterministic = _keyset("deterministic", deterministic, daead.DeterministicAead)
        self.daeads = _single_key_daeads(deterministic)
        lookup = keys.load("lookup")
        self.lookup = _keyset("lookup", lookup, prf.PrfSet)
        self.lookup_keys = {kid: p.compute(LOOKUP_INFO, 64) for kid, p in self.lookup.primitive.all().items()}

    def adopt(self, fresh: Keyring) -> None:
        """Use ``fresh``'s keysets from now on (a reload). One synchronous step: no
        caller on the event loop sees some keysets old and others new."""
        self.__dict__.update(fresh.__dict__)

    # -- signatures -------------------------------------------------------------

    def _payload(self, doc: dict, sig: dict) -> bytes:
        """What the MAC covers; NotCanonical for stored bytes with no canonical form."""
        body = {k: v for k, v in doc.items() if k not in UNSIGNED}
        if sig.get("v") == SIGNATURE_VERSION:
            body["sig"] = {"v": SIGNATURE_VERSION, "kid": sig["kid"], "gen": sig["gen"], "deployment": self.deployment}
            return SIGNATURE_DOMAINS[SIGNATURE_VERSION] + canonical(body)
        body["sig"] = {"kid": sig["kid"]}
        return SIGNATURE_DOMAINS[1] + canonical(body)

    def sign(self, doc: dict, gen: int) -> dict:
        """``doc`` signed for the revision generation ``gen`` its write will create."""
        sig = {"v": SIGNATURE_VERSION, "kid": self.signing.primary, "gen": gen}
        tag = self.signing.primitive.compute_mac(self._payload(doc, sig))
        return {**doc, "sig": {**sig, "mac": b64(tag)}}

    def check_signature(self, doc: dict) -> None:
        """Raise IntegrityViolation, or KeyUnavailable for a signing key that is
        disabled or not in this keyset. Any stored bytes at all: nothing else is raised."""
        docid = str(doc.get("_id"))
        sig = doc.get("sig")
        if (
            not isinstance(sig, dict)
            or not isinstance(sig.get("kid"), int)
            or isinstance(sig["kid"], bool)
            or not isinstance(sig.get("mac"), str)
        ):
            raise IntegrityViolation(docid, "no signature")
        version = sig.get("v", 1)  # version 1 had no "v"
        if not isinstance(version, int) or version not in SIGNATURE_DOMAINS:
            raise IntegrityViolation(docid, "unknown signature version")
        if version == 1 and not self.accept_v1:
            raise IntegrityViolation(docid, "a version 1 signature, refused (--refuse-v1)")
        if version == SIGNATURE_VERSION and not isinstance(sig.get("gen"), int):
            raise IntegrityViolation(docid, "no revision generation in the signature")
        kid = sig["kid"]
        if kid not in self.signing.status:
            raise KeyUnavailable("signing", kid)
        self.signing.check(kid)
        try:
            tag = unb64(sig["mac"])
            if tink_kid(tag) != kid:
                raise ValueError("key id mismatch")
            self.signing.primitive.verify_mac(tag, self._payload(doc, sig))
        except NotCanonical as exc:
            raise IntegrityViolation(docid, f"the stored document has no canonical form: {exc}") from None
        except (ValueError, tink.TinkError):
            raise IntegrityViolation(docid, "signature does not match the content") from None
        if version == SIGNATURE_VERSION and sig["gen"] != generation(doc.get("_rev")):
            raise IntegrityViolation(
                docid,
                f"signed for revision generation {sig['gen']} but stored at {doc.get('_rev')!r}: "
                "an older body written over a newer revision, or a deleted document put back",
            )

    def is_current(self, doc: dict) -> bool:
        """Whether ``doc``'s signature is of the current version, under the primary key."""
        sig = doc.get("sig")
        return isinstance(sig, dict) and sig.get("v") == SIGNATURE_VERSION and sig.get("kid") == self.signing.primary

    # -- opaque tokens ------------------------------------------------------------

    @property
    def _cursor_ad(self) -> bytes:
        return CURSOR_AD + self.deployment.encode()

    def seal(self, payload: Any) -> str:
        """An opaque, authenticated, encrypted token (pagination cursors)."""
        return b64(self.encryption.primitive.encrypt(canonical(payload), self._cursor_ad))

    def unseal(self, token: str) -> Any:
        """The payload of a ``seal`` token; ValueError if forged, edited or garbled."""
        try:
            return orjson.loads(self.encryption.primitive.decrypt(unb64(token), self._cursor_ad))
        except (ValueError, tink.TinkError):
            raise ValueError("not a valid token") from None

    # -- keyed hashes ---------------------------------------------------------------

    def lookup_key(self, kid: int) -> bytes:
        key = self.lookup_keys.get(kid)
        if key is None:
            raise KeyUnavailable("lookup", kid)
        return key
