"""CouchDB failures as typed exceptions.

Every exception keeps the request's method and path (never credentials), the
HTTP status when there was a response, and CouchDB's ``error``/``reason``::

    CouchDBError
     ├── BadRequest(ValueError)            400
     ├── Unauthorized(PermissionError)     401
     ├── Forbidden(PermissionError)        403  (also validate_doc_update refusals)
     ├── NotFound(KeyError)                404
     │    └── Unsupported                  the server lacks the endpoint (dev server)
     ├── Conflict                          409  stale or missing rev
     ├── PreconditionFailed                412  e.g. database already exists
     ├── Unreadable(ValueError)            an answer this client cannot parse (a stored
     │                                     document nested deeper than orjson's 1024 levels)
     └── Unavailable(ConnectionError)      5xx, connect failure, timeout
          ├── ConnectFailed                nothing was sent
          └── Timeout(TimeoutError)        no answer in time

Other statuses raise plain ``CouchDBError``. Each is a ``ServiceError``: its ``code``
names the row of the one error table (``problems``) a caller is answered with when the
service did not expect the failure (``couchdb_unavailable``: 503 + Retry-After).
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import ServiceError
from ..problems import Code


class CouchDBError(ServiceError):
    code: ClassVar[Code] = Code.COUCHDB_ERROR
    retried = False  # an earlier attempt of the request got no answer (it may have been applied)

    def __init__(
        self,
        method: str,
        path: str,
        status: int | None = None,
        error: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(method, path, status, error, reason)
        self.method = method
        self.path = path
        self.status = status
        self.error = error
        self.reason = reason

    @property
    def detail(self) -> str | None:
        if self.code == Code.COUCHDB_UNAVAILABLE:
            return "CouchDB did not answer in time or is down"
        return f"CouchDB answered {self.status}" if self.code == Code.COUCHDB_ERROR else None

    def logged(self) -> str:
        return str(self)  # method, path (ids are not secret), status and CouchDB's error: never credentials

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        detail = ": ".join(p for p in (self.error, self.reason) if p)
        return f"{status}{self.method} {self.path}" + (f" ({detail})" if detail else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"


class BadRequest(CouchDBError, ValueError):
    pass


class Unauthorized(CouchDBError, PermissionError):
    code = Code.COUCHDB_REFUSED


class Forbidden(CouchDBError, PermissionError):
    code = Code.COUCHDB_REFUSED


class NotFound(CouchDBError, KeyError):
    pass


class Unsupported(NotFound):
    """The server does not offer this endpoint (e.g. node config on pouchdb-server)."""


class Conflict(CouchDBError):
    pass


class PreconditionFailed(CouchDBError):
    pass


class Unreadable(CouchDBError, ValueError):
    """A 2xx answer that is not JSON this client can parse: CouchDB keeps documents
    nested deeper than the parser's limit (1024 levels)."""


class Unavailable(CouchDBError, ConnectionError):
    """CouchDB could not serve the request now; trying again later may work."""

    code = Code.COUCHDB_UNAVAILABLE


class ConnectFailed(Unavailable):
    pass


class Timeout(Unavailable, TimeoutError):
    pass


_BY_STATUS: dict[int, type[CouchDBError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
}


def error_for_status(status: int) -> type[CouchDBError]:
    """The exception class for an HTTP error status from CouchDB."""
    if status >= 500:
        return Unavailable
    return _BY_STATUS.get(status, CouchDBError)
