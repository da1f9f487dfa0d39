"""Protected values and document signatures (pure: keys in, values out).

``keyring``: the loaded keysets, signatures and opaque tokens; ``kinds``: the
protection kinds (plain, bcrypt, sha3-512, encrypt, encrypt-deterministic).
"""

from .keyring import IntegrityViolation, Keyring, Keyset, KeyUnavailable
from .kinds import KINDS, Kind, Slot

__all__ = ["KINDS", "IntegrityViolation", "KeyUnavailable", "Keyring", "Keyset", "Kind", "Slot"]
