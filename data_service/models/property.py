"""One declared property of a type: its schema, protection kind and merge rules (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from ..protection.kinds import Kind
from .policies import MergeKind


@dataclass(frozen=True)
class Property:
    name: str
    schema: dict
    kind: Kind  # its protection (``protection.kinds``)
    indexed: bool = False
    bcrypt_cost: int | None = None
    merge: MergeKind | None = None  # how replication conflicts merge it (conflict: merge)
    immutable: bool = False  # once set, never changed or removed

    @property
    def protection(self) -> str:
        return self.kind.name

    @property
    def readable(self) -> bool:
        """False for hashed properties: their values are never returned to callers."""
        return self.kind.readable
