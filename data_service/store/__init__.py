"""Documents in CouchDB: the rules, apart from HTTP.

``documents``: ``DocumentStore``, the store's one face; ``writes``: the one write
pipeline (one document or many); ``reads``/``reader``: what CouchDB holds and how a
document is opened; ``races``: writes stored below quorum; ``claims``: Idempotency-Key
records; ``reconciler``/``sweeper``: conflicts and tombstones above the winner;
``queries``, ``changes``, ``cachefeed``, ``readiness``, ``report``; ``errors`` and
``results``: what it raises and returns. The design: docs/consistency.md.
"""

from .change import ANY_REVISION, Change
from .documents import DocumentStore
from .errors import (
    DocumentNotFound,
    IdempotencyKeyConsumed,
    IdempotencyMismatch,
    KeyInProgress,
    RetriesExhausted,
    StaleRevision,
)
from .results import Answer, Page, Stats

__all__ = [
    "ANY_REVISION",
    "Answer",
    "Change",
    "DocumentNotFound",
    "DocumentStore",
    "IdempotencyKeyConsumed",
    "IdempotencyMismatch",
    "KeyInProgress",
    "Page",
    "RetriesExhausted",
    "StaleRevision",
    "Stats",
]
