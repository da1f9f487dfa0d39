"""The per-type and per-property policies a models file declares (pure)."""

from __future__ import annotations

from enum import StrEnum

DEFAULT_BCRYPT_COST = 12


class DeletePolicy(StrEnum):
    HARD = "hard"  # the document is removed
    SOFT = "soft"  # kept, marked ``meta.deleted_at``; reads answer 404


class ConflictPolicy(StrEnum):
    """How replication conflicts are resolved (``conflicts.rules``)."""

    LATEST = "latest"  # the leaf written last wins whole
    MERGE = "merge"  # property by property


class MergeKind(StrEnum):
    """How one property of a ``merge`` type merges beyond "the latest change wins"."""

    SET = "set"  # arrays: union
    COUNTER = "counter"  # numbers: per-writer increments and decrements add up
