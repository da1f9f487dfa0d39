"""Async CouchDB client on aiohttp, behind one transport seam."""

from .client import Attempt, CouchDB, Hooks, ServerInfo
from .database import Database, ViewResult, WriteResult
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
    Unreadable,
    Unsupported,
)
from .gate import CredentialGate, CredentialsRefused, GateState
from .idpool import IdPool
from .transport import TLS, AiohttpTransport, AsyncTransport, Limits, Request, Response, Timeouts

__all__ = [
    "TLS",
    "AiohttpTransport",
    "AsyncTransport",
    "Attempt",
    "BadRequest",
    "Conflict",
    "ConnectFailed",
    "CouchDB",
    "CouchDBError",
    "CredentialGate",
    "CredentialsRefused",
    "Database",
    "Forbidden",
    "GateState",
    "Hooks",
    "IdPool",
    "Limits",
    "NotFound",
    "PreconditionFailed",
    "Request",
    "Response",
    "ServerInfo",
    "Timeout",
    "Timeouts",
    "Unauthorized",
    "Unavailable",
    "Unreadable",
    "Unsupported",
    "ViewResult",
    "WriteResult",
]
