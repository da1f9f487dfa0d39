"""What is running: the package version, the models file's digest and the key ids
loaded (never key material). ``/_health`` and ``data-service --version`` show it, so an
operator can tell two sidecars apart at a glance."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .protection import Keyring


@dataclass(frozen=True)
class BuildInfo:
    version: str
    models_digest: str | None  # "sha256:<hex>" of the models file's bytes
    keys: dict[str, dict[str, Any]]  # purpose -> {"primary": id, "enabled": [ids]}

    @classmethod
    def of(cls, models_path: str | None, keyring: Keyring | None) -> BuildInfo:
        digest = None
        if models_path:
            digest = "sha256:" + hashlib.sha256(Path(models_path).read_bytes()).hexdigest()
        keys = {}
        if keyring is not None:
            for keyset in (keyring.signing, keyring.encryption, keyring.deterministic, keyring.lookup):
                keys[keyset.purpose] = {"primary": keyset.primary, "enabled": sorted(keyset.enabled)}
        return cls(__version__, digest, keys)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "models_digest": self.models_digest, "keys": self.keys}

    def lines(self) -> list[str]:
        """For ``--version``."""
        out = [f"data-service {self.version}"]
        if self.models_digest:
            out.append(f"models {self.models_digest}")
        for purpose, key in self.keys.items():
            out.append(f"keys {purpose}: primary {key['primary']}, enabled {' '.join(map(str, key['enabled']))}")
        return out
