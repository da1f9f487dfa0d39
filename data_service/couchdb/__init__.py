"""Async CouchDB client on aiohttp, behind one transport seam."""

from .client import CouchDB, Database, ServerInfo, ViewResult, WriteResult
from .errors import (
    BadRequest,
    Conflict,
    ConnectFailed,
    CouchDBError,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Timeout,
    Unauthorized,
    Unavailable,
    Unsupported,
)
from .idpool import IdPool
from .transport import TLS, AiohttpTransport, AsyncTransport, Limits, Request, Response, Timeouts

__all__ = [
    "AiohttpTransport", "AsyncTransport", "BadRequest", "Conflict", "ConnectFailed", "CouchDB",
    "CouchDBError", "Database", "Forbidden", "IdPool", "Limits", "NotFound", "PreconditionFailed",
    "Request", "Response", "ServerInfo", "TLS", "Timeout", "Timeouts", "Unauthorized",
    "Unavailable", "Unsupported", "ViewResult", "WriteResult",
]
