"""Async CouchDB client behind one transport seam (aiohttp or httptools)."""

from .aiohttp_transport import AiohttpTransport
from .answers import Saved, ViewResult, WriteResult
from .client import TRANSPORTS, Attempt, CouchDB, Hooks, ServerInfo
from .database import Database, Server
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
from .httptools_transport import HttptoolsTransport
from .idpool import IdPool
from .transport import TLS, AsyncTransport, Limits, Request, Response, Streamed, Timeouts

__all__ = [
    "TLS",
    "TRANSPORTS",
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
    "HttptoolsTransport",
    "IdPool",
    "Limits",
    "NotFound",
    "PreconditionFailed",
    "Request",
    "Response",
    "Saved",
    "Server",
    "ServerInfo",
    "Streamed",
    "Timeout",
    "Timeouts",
    "Unauthorized",
    "Unavailable",
    "Unreadable",
    "Unsupported",
    "ViewResult",
    "WriteResult",
]
