"""What earlier releases wrote: version 1 signatures (no revision generation, no
deployment) and ciphertexts (associated data without the deployment). The tests use
it to show such documents keep verifying and ``reencrypt`` upgrades them."""

from __future__ import annotations

from data_service.canonical import canonical
from data_service.envelope import UNSIGNED
from data_service.protection import Keyring
from data_service.protection.keyring import SIGNATURE_DOMAINS, b64, tink_kid
from data_service.protection.kinds import Slot


def signed(ring: Keyring, doc: dict) -> dict:
    """``doc`` with a version 1 signature under the primary signing key."""
    kid = ring.signing.primary
    body = {k: v for k, v in doc.items() if k not in UNSIGNED} | {"sig": {"kid": kid}}
    tag = ring.signing.primitive.compute_mac(SIGNATURE_DOMAINS[1] + canonical(body))
    return {**doc, "sig": {"kid": kid, "mac": b64(tag)}}


def encrypted(ring: Keyring, slot: Slot, value) -> str:
    """An ``encrypt`` value as version 1 stored it: ``aead:``, no deployment."""
    ct = ring.encryption.primitive.encrypt(canonical(value), slot.bound(True, None))
    return f"aead:{tink_kid(ct)}:{b64(ct)}"


def deterministic(ring: Keyring, slot: Slot, value) -> str:
    """An ``encrypt-deterministic`` value as version 1 stored it: ``daead:``, no deployment."""
    ct = ring.deterministic.primitive.encrypt_deterministically(canonical(value), slot.bound(False, None))
    return f"daead:{tink_kid(ct)}:{b64(ct)}"
