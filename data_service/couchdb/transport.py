"""The one seam between the CouchDB client and the network.

``AsyncTransport.handle`` takes a fully built ``Request`` (path already
percent-encoded) and returns a ``Response`` or raises ``ConnectFailed``,
``Timeout`` or ``Unavailable``. It never interprets statuses and never retries:
both are the client's job. ``AsyncTransport.stream`` reads a long answer as it
arrives (a feed). Tests inject their own transport; production picks one of
``aiohttp_transport`` and ``httptools_transport`` (``client.TRANSPORTS``).
"""

from __future__ import annotations

import abc
import base64
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

import orjson


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

    def ssl_context(self) -> ssl.SSLContext:
        """The client context: the system CAs or ``ca_file``; with ``verify`` off, no
        certificate or host name check (never in production)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def basic_auth(auth: tuple[str, str]) -> str:
    """The ``Authorization`` header value for (user, password)."""
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


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
    retried: bool = False  # set by the client: an earlier attempt of this request got no answer

    def json(self):
        return orjson.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Streamed:
    """A response whose body is read as it arrives (``AsyncTransport.stream``).
    ``chunks`` yields the body in the pieces the transport got; reading past the
    request's time limit raises ``Timeout``, a connection lost before the end
    ``Unavailable``. Bound each read yourself to notice silence (a feed's heartbeat)."""

    status: int
    headers: Mapping[str, str]
    chunks: AsyncIterator[bytes]

    async def lines(self) -> AsyncIterator[bytes]:
        """The body split at ``\\n`` (without it); empty lines too: a feed's heartbeats."""
        rest = b""
        async for chunk in self.chunks:
            *complete, rest = (rest + chunk).split(b"\n")
            for line in complete:
                yield line
        if rest:
            yield rest


class AsyncTransport(abc.ABC):
    @abc.abstractmethod
    async def handle(self, request: Request) -> Response:
        """Send one request; raise an ``Unavailable`` subclass if no response came."""

    def stream(self, request: Request) -> contextlib.AbstractAsyncContextManager[Streamed]:
        """Send one request; the status and headers when they came, the body as it comes.
        Leaving the block before the end closes the connection. The same errors as ``handle``.

        This default, for transports that cannot read incrementally (an in-memory one),
        waits for the whole answer (``handle``) and yields its body as one chunk: a
        heartbeat cannot be watched through it."""
        return _whole_body(self, request)

    async def aclose(self) -> None:  # noqa: B027 - optional: transports without connections need none
        """Release connections."""


@contextlib.asynccontextmanager
async def _whole_body(transport: AsyncTransport, request: Request) -> AsyncIterator[Streamed]:
    response = await transport.handle(request)
    yield Streamed(response.status, response.headers, _one_chunk(response.body))


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    if body:
        yield body


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch  # what quote(s, safe="") leaves as it is


def path(*segments: str) -> str:
    """``/seg/seg`` with every segment percent-encoded (ids may hold ``/``). Names and
    ids made of unreserved characters skip ``quote`` (a few µs per CouchDB request)."""
    return "/" + "/".join([s if _UNRESERVED(s) else quote(s, safe="") for s in segments])
