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

from .couchdb import errors as couch

RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class Kind:
    status: int
    title: str
    retryable: bool = False


TABLE: dict[str, Kind] = {
    "bad_request": Kind(400, "The request is malformed"),
    "not_found": Kind(404, "No such resource"),
    "method_not_allowed": Kind(405, "Method not allowed on this resource"),
    "not_acceptable": Kind(406, "Only application/json can be produced"),
    "payload_too_large": Kind(413, "The request body is too large"),
    "unsupported_media_type": Kind(415, "The request body must be JSON"),
    "internal_error": Kind(500, "Internal error"),
    "couchdb_refused": Kind(502, "CouchDB refused the service's credentials"),
    "couchdb_error": Kind(502, "CouchDB answered unexpectedly"),
    "couchdb_unavailable": Kind(503, "CouchDB is unavailable", retryable=True),
    "database_missing": Kind(503, "The database does not exist (run the installer)", retryable=True),
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


def from_exception(exc: BaseException | None, status: int) -> Problem:
    """Any exception (or bare status) as a Problem; unknown ones are 500s without detail."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, couch.CouchDBError):
        return from_couchdb(exc)
    if isinstance(exc, HTTPError):
        status = exc.status_code
    return Problem(_BY_STATUS.get(status) or ("internal_error" if status >= 500 else "bad_request"))

