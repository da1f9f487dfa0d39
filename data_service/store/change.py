"""A write a caller asked for, as the pipeline carries it (``writes``, ``claims``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..lifecycle import Op
from ..vocabulary import Stored
from .results import Answer

ANY_REVISION = "*"


@dataclass
class Change:
    """One write a caller asked for, and what became of it (``answer``)."""

    op: Op
    docid: str | None
    values: Any = None  # the create or replace body, or the merge patch
    if_match: frozenset[str] | None = None  # the revisions the caller accepts; ANY_REVISION for "*"
    key: str | None = None  # a create's Idempotency-Key
    hashed: Mapping[str, str] = field(default_factory=dict)
    current: Stored | None = None  # the stored document it is made on (a create: None, or a tombstone stub)
    cached: bool = False  # ``current`` came from the read cache, not from CouchDB
    replay: bool = False  # a create whose Idempotency-Key names this document already
    may_complete: bool = False  # a replay whose document is missing may create it: its claim is settled
    key_provisional: bool = False  # its key's claim was stored below quorum: answered not-met
    answer: Answer | Exception | None = None

    @property
    def blind(self) -> bool:
        """An unconditioned PATCH: re-applied on conflicts, never a 412."""
        return self.op is Op.PATCH and self.if_match is None
