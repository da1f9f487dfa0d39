"""The transport on aiohttp: its keep-alive pool, one ``ClientSession`` per process (per loop)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from .errors import ConnectFailed, Timeout, Unavailable
from .transport import TLS, AsyncTransport, Limits, Request, Response, Streamed, Timeouts, basic_auth


class AiohttpTransport(AsyncTransport):
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
            self._headers["Authorization"] = basic_auth(auth)
        self._timeouts = timeouts
        self._limits = limits
        self._tls = tls
        self._sessions: dict[bool, aiohttp.ClientSession] = {}  # by Request.long_poll: a pool each

    def _get_session(self, long_poll: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(long_poll)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_long_polls if long_poll else self._limits.max_connections,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=self._tls.ssl_context() if self._base.startswith("https") else False,
            )
            # no gzip asked for: CouchDB does not compress JSON anyway, and pouchdb-server
            # would hold a feed's heartbeats in its compressor
            session = self._sessions[long_poll] = aiohttp.ClientSession(
                connector=connector, headers=self._headers, skip_auto_headers=("Accept-Encoding",)
            )
        return session

    async def handle(self, request: Request) -> Response:
        try:
            async with self._request(request) as resp:
                body = await resp.read()
                return Response(resp.status, body, dict(resp.headers))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _seam_error(request, exc) from None

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[Streamed]:
        try:
            resp = await self._request(request)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _seam_error(request, exc) from None
        try:
            yield Streamed(resp.status, dict(resp.headers), _chunks(request, resp))
        finally:
            resp.release()  # back to the pool only when the body was read to its end

    def _request(self, request: Request):
        timeout = aiohttp.ClientTimeout(
            total=request.timeout or self._timeouts.request,
            sock_connect=self._timeouts.connect,
        )
        url = URL(self._base + request.target, encoded=True)
        headers = dict(request.headers)
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")
        session = self._get_session(request.long_poll)
        return session.request(request.method, url, data=request.body, headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


async def _chunks(request: Request, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _seam_error(request, exc) from None


def _seam_error(request: Request, exc: BaseException) -> Unavailable:
    """aiohttp's exception as the seam's: nothing sent, no answer in time, no (whole) answer."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return ConnectFailed(request.method, request.path, reason=type(exc).__name__)
    if isinstance(exc, TimeoutError):
        return Timeout(request.method, request.path, reason="no response in time")
    return Unavailable(request.method, request.path, reason=type(exc).__name__)
