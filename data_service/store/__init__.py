"""Documents in CouchDB: the rules, apart from HTTP.

``documents``: ``DocumentStore`` (reads, writes, secrets); ``writes``: per-document
serialization and writes stored below quorum; ``claims``: Idempotency-Key records;
``queries``: collection queries; ``readiness`` and ``report``: what health and the
database metrics show; ``errors`` and ``results``: what it raises and returns.
"""

from .documents import ANY_REVISION, DocumentStore
from .errors import DocumentNotFound, IdempotencyKeyConsumed, IdempotencyMismatch, RetriesExhausted, StaleRevision
from .results import Page, Shown, Stats

__all__ = [
    "ANY_REVISION",
    "DocumentNotFound",
    "DocumentStore",
    "IdempotencyKeyConsumed",
    "IdempotencyMismatch",
    "Page",
    "RetriesExhausted",
    "Shown",
    "StaleRevision",
    "Stats",
]
