"""What the store raises besides validation and integrity errors (pure)."""

from __future__ import annotations

from typing import Any

from ..errors import ServiceError
from ..problems import Code
from ..vocabulary import Representation


class DocumentNotFound(ServiceError, KeyError):
    """No such document of this type (missing, another type, or soft-deleted)."""

    code = Code.NOT_FOUND

    @property
    def detail(self) -> str:
        return "no such document"


class StaleRevision(ServiceError):
    """The caller's revision is not the current one: the answer carries the current
    representation and its revision, so the caller can re-apply its change and retry."""

    code = Code.STALE_REVISION

    def __init__(self, rev: str, representation: Representation) -> None:
        super().__init__(representation["id"])
        self.rev, self.representation = rev, representation

    def extensions(self) -> dict[str, Any]:
        return {"current": self.representation}

    def headers(self) -> dict[str, str]:
        return {"ETag": f'"{self.rev}"'}


class RetriesExhausted(ServiceError):
    """The document kept changing under the sidecar's own read-modify-write."""

    code = Code.CONFLICT_RETRIES_EXHAUSTED


class KeyInProgress(RetriesExhausted):
    """A create whose Idempotency-Key names a document another request is still creating
    (or whose claim may yet lose): retried, it is answered with that document."""

    @property
    def detail(self) -> str:
        return "Another request with this Idempotency-Key is creating its document; try again"


class IdempotencyMismatch(ServiceError):
    """An Idempotency-Key was reused with a different body."""

    code = Code.IDEMPOTENCY_KEY_MISMATCH


class IdempotencyKeyConsumed(ServiceError):
    """An Idempotency-Key whose document was created and then deleted: a replay must
    not bring it back."""

    code = Code.IDEMPOTENCY_KEY_CONSUMED


class PreconditionRequired(ServiceError):
    """A replace or delete that names no revision (If-Match)."""

    code = Code.PRECONDITION_REQUIRED
