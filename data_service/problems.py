"""The one error table: every error the HTTP API answers, by its stable code (pure).

Domain exceptions name their row in ``code`` (``errors.ServiceError``); the web layer
(``web.problem``) renders a row as an RFC 9457 ``application/problem+json`` body with
``code`` and ``retryable`` members, and maps CouchDB failures and Tornado's own
statuses onto rows too.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "unauthorized": Kind(401, "A valid bearer token is required (Authorization: Bearer <token>)"),
    "not_found": Kind(404, "No such resource"),
    "unknown_type": Kind(404, "No such document type"),
    "method_not_allowed": Kind(405, "Method not allowed on this resource"),
    "not_acceptable": Kind(406, "Only application/json can be produced"),
    "idempotency_key_consumed": Kind(
        409, "The document this Idempotency-Key created has been deleted; a replay does not create it again"
    ),
    "stale_revision": Kind(
        412, "The document changed since you read it; re-apply your change to `current` and retry", retryable=True
    ),
    "payload_too_large": Kind(413, "The request body is too large"),
    "host_not_allowed": Kind(421, "This Host is not served here"),
    "unsupported_media_type": Kind(415, "Unsupported request content type"),
    "validation_failed": Kind(422, "The document does not match its type's schema"),
    "reserved_property": Kind(422, "The body sets names reserved for the service"),
    "number_out_of_range": Kind(422, "A number is beyond ±(2^53-1), which JSON cannot carry exactly"),
    "nested_too_deep": Kind(422, "The body is nested more than 64 levels deep"),
    "idempotency_key_mismatch": Kind(422, "This Idempotency-Key was used with another body"),
    "precondition_required": Kind(428, "If-Match with the document's ETag is required"),
    "internal_error": Kind(500, "Internal error"),
    "integrity_violation": Kind(500, "The stored document failed its integrity check"),
    "migration_failed": Kind(500, "The stored document of an older version cannot be upgraded to the current one"),
    "couchdb_refused": Kind(502, "CouchDB refused the service's credentials"),
    "couchdb_error": Kind(502, "CouchDB answered unexpectedly"),
    "couchdb_unavailable": Kind(503, "CouchDB is unavailable", retryable=True),
    "database_missing": Kind(503, "The database does not exist (run the installer)", retryable=True),
    "not_installed": Kind(
        503, "The database's design documents are missing or outdated (run data-service install)", retryable=True
    ),
    "conflict_retries_exhausted": Kind(503, "The document kept changing; try again", retryable=True),
    "busy": Kind(503, "Too many bcrypt hashes or change streams at once; retry after a moment", retryable=True),
    "draining": Kind(503, "The service is shutting down; send requests to another instance", retryable=True),
    # liveness with --workers: a worker's event loop is stuck, or it keeps dying
    "worker_stalled": Kind(503, "A worker of this sidecar has stopped answering", retryable=True),
    # A key this sidecar does not have enabled: a newer one after `keys rotate` that it has
    # not loaded yet (another sidecar, restarted, reads it), or one an operator disabled.
    "key_unavailable": Kind(
        503, "The document is protected by a key this sidecar does not have enabled", retryable=True
    ),
}

# For statuses Tornado raises by itself (unknown method, malformed request ...).
BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
