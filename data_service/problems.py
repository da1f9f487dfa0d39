"""The one error table: every error the HTTP API answers, as RFC 9457 problems.

Handlers raise ``Problem(code, detail, **extensions)``; ``web.base`` renders it
as ``application/problem+json`` with ``code`` and ``retryable`` members.
CouchDB failures are translated here too (``from_couchdb``), so the whole
mapping from "what went wrong" to "what the caller sees" is in one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tornado.web import HTTPError

from . import store
from .couchdb import errors as couch
from .etags import etag
from .models import ValidationFailed
from .protection import IntegrityViolation, KeyUnavailable
from .query import QueryError

RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class Kind:
    status: int
    title: str
    retryable: bool = False


TABLE: dict[str, Kind] = {
    "bad_request": Kind(400, "The request is malformed"),
    "invalid_json": Kind(400, "The body is not valid JSON"),
    "invalid_id": Kind(400, "Not a valid document id"),
    "invalid_query": Kind(400, "The query cannot be answered"),
    "not_found": Kind(404, "No such resource"),
    "unknown_type": Kind(404, "No such document type"),
    "method_not_allowed": Kind(405, "Method not allowed on this resource"),
    "not_acceptable": Kind(406, "Only application/json can be produced"),
    "idempotency_key_consumed": Kind(409, "The document this Idempotency-Key created has been deleted; "
                                          "a replay does not create it again"),
    "stale_revision": Kind(412, "The document changed since you read it; "
                                "re-apply your change to `current` and retry", retryable=True),
    "payload_too_large": Kind(413, "The request body is too large"),
    "unsupported_media_type": Kind(415, "Unsupported request content type"),
    "validation_failed": Kind(422, "The document does not match its type's schema"),
    "reserved_property": Kind(422, "The body sets names reserved for the service"),
    "idempotency_key_mismatch": Kind(422, "This Idempotency-Key was used with another body"),
    "precondition_required": Kind(428, "If-Match with the document's ETag is required"),
    "internal_error": Kind(500, "Internal error"),
    "integrity_violation": Kind(500, "The stored document failed its integrity check"),
    "key_unavailable": Kind(500, "The document is protected by a disabled or missing key"),
    "couchdb_refused": Kind(502, "CouchDB refused the service's credentials"),
    "couchdb_error": Kind(502, "CouchDB answered unexpectedly"),
    "couchdb_unavailable": Kind(503, "CouchDB is unavailable", retryable=True),
    "database_missing": Kind(503, "The database does not exist (run the installer)", retryable=True),
    "not_installed": Kind(503, "The database's design documents are missing or outdated "
                               "(run data-service install)", retryable=True),
    "conflict_retries_exhausted": Kind(503, "The document kept changing; try again", retryable=True),
}

# For statuses Tornado raises by itself (unknown method, malformed request ...).
_BY_STATUS = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
    413: "payload_too_large", 415: "unsupported_media_type",
}


class Problem(HTTPError):
    """An error answer. ``extensions`` become extra members of the body."""

    def __init__(self, code: str, detail: str | None = None, *, headers: dict | None = None,
                 **extensions: Any) -> None:
        self.kind = TABLE[code]
        super().__init__(self.kind.status)
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions
        if self.kind.retryable and self.kind.status == 503:
            self.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:data-service:problem:{self.code}",
            "title": self.kind.title,
            "status": self.kind.status,
            "code": self.code,
            "retryable": self.kind.retryable,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


def from_couchdb(exc: couch.CouchDBError) -> Problem:
    """What the caller sees when CouchDB failed in a way the handler did not expect."""
    if isinstance(exc, couch.Unavailable):
        return Problem("couchdb_unavailable", "CouchDB did not answer in time or is down")
    if isinstance(exc, (couch.Unauthorized, couch.Forbidden)):
        return Problem("couchdb_refused")
    return Problem("couchdb_error", f"CouchDB answered {exc.status}")


def from_store(exc: Exception) -> Problem | None:
    """The answer to each ``store`` / protection error (None if ``exc`` is not one)."""
    if isinstance(exc, store.StaleRevision):
        return Problem("stale_revision", headers={"ETag": etag(exc.current["_rev"])},
                       current=exc.representation)
    if isinstance(exc, store.DocumentNotFound):
        return Problem("not_found", "no such document")
    if isinstance(exc, ValidationFailed):
        code = "reserved_property" if isinstance(exc, store.ReservedNames) else "validation_failed"
        return Problem(code, errors=[{"path": v.path, "message": v.message} for v in exc.violations])
    if isinstance(exc, QueryError):
        return Problem("invalid_query", str(exc))
    if isinstance(exc, store.RetriesExhausted):
        return Problem("conflict_retries_exhausted")
    if isinstance(exc, store.IdempotencyMismatch):
        return Problem("idempotency_key_mismatch")
    if isinstance(exc, store.IdempotencyKeyConsumed):
        return Problem("idempotency_key_consumed")
    if isinstance(exc, IntegrityViolation):
        return Problem("integrity_violation", f"document {exc.docid} failed its signature check")
    if isinstance(exc, KeyUnavailable):
        return Problem("key_unavailable", f"needs {exc.purpose} key {exc.key_id}; run reencrypt before disabling keys")
    return None


def from_exception(exc: BaseException | None, status: int) -> Problem:
    """Any exception (or bare status) as a Problem; unknown ones are 500s without detail."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, couch.CouchDBError):
        return from_couchdb(exc)
    if isinstance(exc, Exception) and (problem := from_store(exc)) is not None:
        return problem
    if isinstance(exc, HTTPError):
        status = exc.status_code
    return Problem(_BY_STATUS.get(status) or ("internal_error" if status >= 500 else "bad_request"))

