"""The one error table: every error the HTTP API answers, by its stable code (pure).

Domain exceptions name their row in ``code`` (``errors.ServiceError``); the web layer
(``web.problem``) renders a row as an RFC 9457 ``application/problem+json`` body with
``code`` and ``retryable`` members, and maps CouchDB failures and Tornado's own
statuses onto rows too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

RETRY_AFTER_SECONDS = 1


class Code(StrEnum):
    """The stable error codes: the ``code`` member of every problem body and its ``type`` URN."""

    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    INVALID_ID = "invalid_id"
    INVALID_QUERY = "invalid_query"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    UNKNOWN_TYPE = "unknown_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    IDEMPOTENCY_KEY_CONSUMED = "idempotency_key_consumed"
    STALE_REVISION = "stale_revision"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    HOST_NOT_ALLOWED = "host_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_FAILED = "validation_failed"
    RESERVED_PROPERTY = "reserved_property"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    NESTED_TOO_DEEP = "nested_too_deep"
    IDEMPOTENCY_KEY_MISMATCH = "idempotency_key_mismatch"
    PRECONDITION_REQUIRED = "precondition_required"
    INTERNAL_ERROR = "internal_error"
    INTEGRITY_VIOLATION = "integrity_violation"
    MIGRATION_FAILED = "migration_failed"
    COUCHDB_REFUSED = "couchdb_refused"
    COUCHDB_ERROR = "couchdb_error"
    COUCHDB_UNAVAILABLE = "couchdb_unavailable"
    DATABASE_MISSING = "database_missing"
    NOT_INSTALLED = "not_installed"
    CONFLICT_RETRIES_EXHAUSTED = "conflict_retries_exhausted"
    BUSY = "busy"
    DRAINING = "draining"
    WORKER_STALLED = "worker_stalled"
    KEY_UNAVAILABLE = "key_unavailable"


@dataclass(frozen=True)
class Kind:
    status: int
    title: str
    retryable: bool = False


TABLE: dict[Code, Kind] = {
    Code.BAD_REQUEST: Kind(400, "The request is malformed"),
    Code.INVALID_JSON: Kind(400, "The body is not valid JSON"),
    Code.INVALID_ID: Kind(400, "Not a valid document id"),
    Code.INVALID_QUERY: Kind(400, "The query cannot be answered"),
    Code.UNAUTHORIZED: Kind(401, "A valid bearer token is required (Authorization: Bearer <token>)"),
    Code.NOT_FOUND: Kind(404, "No such resource"),
    Code.UNKNOWN_TYPE: Kind(404, "No such document type"),
    Code.METHOD_NOT_ALLOWED: Kind(405, "Method not allowed on this resource"),
    Code.NOT_ACCEPTABLE: Kind(406, "Only application/json can be produced"),
    Code.IDEMPOTENCY_KEY_CONSUMED: Kind(
        409, "The document this Idempotency-Key created has been deleted; a replay does not create it again"
    ),
    Code.STALE_REVISION: Kind(
        412, "The document changed since you read it; re-apply your change to `current` and retry", retryable=True
    ),
    Code.PAYLOAD_TOO_LARGE: Kind(413, "The request body is too large"),
    Code.HOST_NOT_ALLOWED: Kind(421, "This Host is not served here"),
    Code.UNSUPPORTED_MEDIA_TYPE: Kind(415, "Unsupported request content type"),
    Code.VALIDATION_FAILED: Kind(422, "The document does not match its type's schema"),
    Code.RESERVED_PROPERTY: Kind(422, "The body sets names reserved for the service"),
    Code.NUMBER_OUT_OF_RANGE: Kind(422, "A number is beyond ±(2^53-1), which JSON cannot carry exactly"),
    Code.NESTED_TOO_DEEP: Kind(422, "The body is nested more than 64 levels deep"),
    Code.IDEMPOTENCY_KEY_MISMATCH: Kind(422, "This Idempotency-Key was used with another body"),
    Code.PRECONDITION_REQUIRED: Kind(428, "If-Match with the document's ETag is required"),
    Code.INTERNAL_ERROR: Kind(500, "Internal error"),
    Code.INTEGRITY_VIOLATION: Kind(500, "The stored document failed its integrity check"),
    Code.MIGRATION_FAILED: Kind(500, "The stored document of an older version cannot be upgraded to the current one"),
    Code.COUCHDB_REFUSED: Kind(502, "CouchDB refused the service's credentials"),
    Code.COUCHDB_ERROR: Kind(502, "CouchDB answered unexpectedly"),
    Code.COUCHDB_UNAVAILABLE: Kind(503, "CouchDB is unavailable", retryable=True),
    Code.DATABASE_MISSING: Kind(503, "The database does not exist (run the installer)", retryable=True),
    Code.NOT_INSTALLED: Kind(
        503, "The database's design documents are missing or outdated (run data-service install)", retryable=True
    ),
    Code.CONFLICT_RETRIES_EXHAUSTED: Kind(503, "The document kept changing; try again", retryable=True),
    Code.BUSY: Kind(503, "Too many bcrypt hashes or change streams at once; retry after a moment", retryable=True),
    Code.DRAINING: Kind(503, "The service is shutting down; send requests to another instance", retryable=True),
    # liveness with --workers: a worker's event loop is stuck, or it keeps dying
    Code.WORKER_STALLED: Kind(503, "A worker of this sidecar has stopped answering", retryable=True),
    # A key this sidecar does not have enabled: a newer one after `keys rotate` that it has
    # not loaded yet (another sidecar, restarted, reads it), or one an operator disabled.
    Code.KEY_UNAVAILABLE: Kind(
        503, "The document is protected by a key this sidecar does not have enabled", retryable=True
    ),
}

# For statuses Tornado raises by itself (unknown method, malformed request ...).
BY_STATUS: dict[int, Code] = {
    400: Code.BAD_REQUEST,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    406: Code.NOT_ACCEPTABLE,
    413: Code.PAYLOAD_TOO_LARGE,
    415: Code.UNSUPPORTED_MEDIA_TYPE,
}
