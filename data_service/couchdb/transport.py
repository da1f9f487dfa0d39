"""The one seam between the CouchDB client and the network.

``AsyncTransport.handle`` takes a fully built ``Request`` (path already
percent-encoded) and returns a ``Response`` or raises ``ConnectFailed``,
``Timeout`` or ``Unavailable``. It never interprets statuses: that is the
client's job. Tests inject their own transport; production uses aiohttp.
"""

from __future__ import annotations

import abc
import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from .errors import ConnectFailed, Timeout, Unavailable


@dataclass(frozen=True)
class Timeouts:
    """Seconds to open a connection, and for a whole request/response."""

    connect: float = 5.0
    request: float = 30.0


@dataclass(frozen=True)
class Limits:
    """Keep-alive pool sizes and how long an idle connection is kept. Long polls
    (``Request.long_poll``: a request CouchDB holds until something changes) have a pool
    of their own, so however many wait, no other request queues behind them."""

    max_connections: int = 100
    max_long_polls: int = 33
    keepalive_expiry: float = 30.0


@dataclass(frozen=True)
class TLS:
    """Server certificate checking for https:// CouchDB URLs."""

    ca_file: str | None = None
    verify: bool = True

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.verify:
            return False
        return ssl.create_default_context(cafile=self.ca_file)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-encoded, starts with "/"
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # overrides Timeouts.request
    long_poll: bool = False  # held until something changes: sent over the long-poll pool (Limits)

    @property
    def target(self) -> str:
        """Path plus encoded query string."""
        if not self.params:
            return self.path
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.params)
        return f"{self.path}?{query}"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self):
        return orjson.loads(self.body) if self.body else None


class AsyncTransport(abc.ABC):
    @abc.abstractmethod
    async def handle(self, request: Request) -> Response:
        """Send one request; raise an ``Unavailable`` subclass if no response came."""

    async def aclose(self) -> None:  # noqa: B027 - optional: transports without connections need none
        """Release connections."""


class AiohttpTransport(AsyncTransport):
    """Keep-alive pool over aiohttp; one ``ClientSession`` per process (per loop)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(),
        tls: TLS = TLS(),
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._timeouts = timeouts
        self._limits = limits
        self._tls = tls
        self._sessions: dict[bool, aiohttp.ClientSession] = {}  # by long_poll: one pool each

    def _get_session(self, long_poll: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(long_poll)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_long_polls if long_poll else self._limits.max_connections,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=self._tls.ssl_context() if self._base.startswith("https") else False,
            )
            session = self._sessions[long_poll] = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return session

    async def handle(self, request: Request) -> Response:
        session = self._get_session(request.long_poll)
        timeout = aiohttp.ClientTimeout(
            total=request.timeout or self._timeouts.request,
            sock_connect=self._timeouts.connect,
        )
        url = URL(self._base + request.target, encoded=True)
        headers = dict(request.headers)
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            async with session.request(
                request.method, url, data=request.body, headers=headers, timeout=timeout
            ) as resp:
                body = await resp.read()
                return Response(resp.status, body, dict(resp.headers))
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(request.method, request.path, reason=type(exc).__name__) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise Timeout(request.method, request.path, reason="no response in time") from None
        except aiohttp.ClientError as exc:
            raise Unavailable(request.method, request.path, reason=type(exc).__name__) from None

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
