"""Async CouchDB 3.x client: the server, requests with retries, typed errors.

Written to the CouchDB 3.x API. Where the dev server (pouchdb-server) lacks a
feature the client says so with ``Unsupported`` instead of guessing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from ..retry import RetryPolicy
from .aiohttp_transport import AiohttpTransport
from .database import Database
from .errors import CouchDBError, Unavailable, Unreadable, Unsupported, error_for_status
from .httptools_transport import HttptoolsTransport
from .info import ServerInfo
from .transport import TLS, AsyncTransport, Limits, Request, Response, Timeouts, path

# The transports ``--couchdb-transport`` names; each takes (base_url, auth=, timeouts=, limits=, tls=).
TRANSPORTS: dict[str, type[AiohttpTransport | HttptoolsTransport]] = {
    "aiohttp": AiohttpTransport,
    "httptools": HttptoolsTransport,
}
DEFAULT_TRANSPORT = "httptools"  # 25-30% less CPU per request than aiohttp (bench/README.md)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({502, 503, 504})
_MISSING: Any = object()


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``http://u:p@host/`` → (``http://host``, (u, p)); the URL kept has no secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if parts.username is None:
        return clean, None
    return clean, (unquote(parts.username), unquote(parts.password or ""))


_JSON_PARAMS = frozenset({"key", "startkey", "endkey", "start_key", "end_key"})


def encode_params(options: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Query parameters the CouchDB way: keys as JSON, booleans as true/false."""
    pairs = []
    for name, value in options.items():
        if value is None:
            continue
        if name in _JSON_PARAMS:
            text = orjson.dumps(value).decode()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        pairs.append((name, text))
    return tuple(pairs)


@dataclass
class Attempt:
    """One request attempt as ``Hooks`` see it: ``request`` is what is sent (a hook may
    replace it, e.g. to add headers); ``response`` is set when one came."""

    request: Request
    response: Response | None = None


class Hooks:
    """The one place metrics, request logs and traces see CouchDB (``observe.py``):
    ``attempt`` wraps sending each request attempt. This default does nothing."""

    @contextlib.contextmanager
    def attempt(self, request: Request) -> Iterator[Attempt]:
        yield Attempt(request)


class CouchDB:
    """A CouchDB server. Use ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        transport: AsyncTransport | None = None,
        transport_kind: str = DEFAULT_TRANSPORT,
        timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(),
        tls: TLS = TLS(),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        hooks: Hooks = Hooks(),
    ) -> None:
        """``hooks`` wrap every request attempt (headers out; metrics, logs, spans).
        Without ``transport``, one of ``TRANSPORTS`` (``transport_kind``) is made."""
        self.url, url_auth = split_credentials(url)
        self.transport = transport or TRANSPORTS[transport_kind](
            self.url, auth=auth or url_auth, timeouts=timeouts, limits=limits, tls=tls
        )
        self.retry = retry
        self._sleep = sleep
        self.hooks = hooks
        self._info: ServerInfo | None = None

    async def __aenter__(self) -> CouchDB:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def request(
        self,
        method: str,
        target: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = _MISSING,
        idempotent: bool | None = None,
        timeout: float | None = None,
        long_poll: bool = False,
    ) -> Response:
        """Send with retries; return a 2xx/304 ``Response`` or raise a typed error.

        Idempotent requests (GET/HEAD/PUT/DELETE, or ``idempotent=True``) are retried
        on connection failures, timeouts and 502/503/504, per ``self.retry``.
        A retried write whose first attempt did land answers 409: the response (or the
        error) says ``retried``, so callers know to ask whether the conflict is theirs.
        ``long_poll``: CouchDB holds the request until something changes (the transport
        keeps a pool for those).
        """
        body = None if json is _MISSING else orjson.dumps(json)
        request = Request(method, target, encode_params(params or {}), body, timeout=timeout, long_poll=long_poll)
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        attempts = self.retry.attempts if idempotent else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                with self.hooks.attempt(request) as seen:
                    seen.response = response = await self.transport.handle(seen.request)
            except Unavailable:
                if last:
                    raise
            else:
                if response.status < 400:
                    return replace(response, retried=True) if attempt else response
                if last or response.status not in RETRY_STATUSES:
                    raise _error(request, response, retried=attempt > 0)
            await self._sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    async def json(self, method: str, target: str, **kwargs) -> Any:
        response = await self.request(method, target, **kwargs)
        try:
            return response.json()
        except orjson.JSONDecodeError:  # never the parser's message: it may quote stored bytes
            raise Unreadable(method, target, response.status, "unreadable", "not JSON this client can parse") from None

    # -- server ---------------------------------------------------------------

    async def server_info(self, refresh: bool = False) -> ServerInfo:
        if self._info is None or refresh:
            self._info = ServerInfo(await self.json("GET", "/"))
        return self._info

    async def uuids(self, count: int = 1) -> list[str]:
        return (await self.json("GET", "/_uuids", params={"count": count}))["uuids"]

    async def membership(self) -> dict:
        """``GET /_membership``: ``cluster_nodes`` (configured) and ``all_nodes`` (connected).
        Server admins only on CouchDB 3 (``Unauthorized`` otherwise)."""
        return await self.json("GET", "/_membership")

    async def _node_config(self, method: str, section: str, key: str | None, **kwargs) -> Any:
        info = await self.server_info()
        target = path("_node", "_local", "_config", section, *([key] if key else []))
        if not info.supports_node_config:
            raise Unsupported(method, target, reason=f"{info.kind} has no node config")
        return await self.json(method, target, **kwargs)

    async def config_get(self, section: str, key: str | None = None) -> Any:
        """A node config section (dict) or value (str); ``NotFound`` if unset."""
        return await self._node_config("GET", section, key)

    async def config_put(self, section: str, key: str, value: str) -> str:
        """Set a node config value; returns the previous value."""
        return await self._node_config("PUT", section, key, json=value)

    def database(self, name: str) -> Database:
        return Database(self, name)


def _error(request: Request, response: Response, retried: bool = False) -> CouchDBError:
    error = reason = None
    try:
        body = response.json()
        if isinstance(body, dict):
            error, reason = body.get("error"), body.get("reason")
    except orjson.JSONDecodeError:
        pass
    cls = error_for_status(response.status)
    exc = cls(request.method, request.path, response.status, error, reason)
    exc.retried = retried
    return exc
