"""What the transport conformance tests share: the transports under test (one line each)
and a tiny scripted HTTP/1.1 server on loopback for the cases no real CouchDB shows on
demand (silence, a cut answer, a slow answer, TLS with a self-signed certificate)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from data_service.couchdb import AiohttpTransport, AsyncTransport, HttptoolsTransport


@dataclass(frozen=True)
class Kind:
    """A transport under test. ``make(base_url, auth=, timeouts=, limits=, tls=)``.
    ``network``: it opens connections (the fault, pool and TLS tests apply; an in-memory
    transport runs the CouchDB-behaviour tests only). ``incremental``: its ``stream``
    yields a body as it arrives (the seam's default waits for the whole answer)."""

    name: str
    make: Callable[..., AsyncTransport]
    network: bool = True
    incremental: bool = True


# Adding a transport to every conformance test: one line here.
KINDS = [
    Kind("aiohttp", AiohttpTransport),
    Kind("httptools", HttptoolsTransport),
]


def header(response, name: str) -> str | None:
    """A response header by name, in any case (aiohttp says ``Etag``, CouchDB ``ETag``)."""
    return next((value for key, value in response.headers.items() if key.lower() == name.lower()), None)


@dataclass
class Received:
    """One request as the scripted server read it."""

    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    connection: int  # which accepted connection (1, 2, …) it came on


# An answer script: write the response for ``Received`` (or nothing); return False to
# close the connection afterwards.
Script = Callable[[Received, asyncio.StreamWriter], Awaitable[bool]]


def reply(body: bytes = b"", status: int = 200, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 answer with Content-Length (unless ``headers`` name their own framing)."""
    fields = {"Content-Type": "application/json", **(headers or {})}
    if "Transfer-Encoding" not in fields and "Content-Length" not in fields:
        fields["Content-Length"] = str(len(body))
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    reason = {200: "OK", 201: "Created", 304: "Not Modified", 404: "Not Found"}.get(status, "Whatever")
    return f"HTTP/1.1 {status} {reason}\r\n{head}\r\n".encode() + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``b""`` gives the last one)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@dataclass
class ScriptedServer:
    """Loopback HTTP/1.1 server: reads each request, lets ``script`` answer it. Counts
    connections accepted and the most open at once."""

    script: Script
    tls: ssl.SSLContext | None = None
    accepted: int = 0
    open_now: int = 0
    peak: int = 0
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _server: asyncio.AbstractServer | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self.open_now += 1
        self.peak = max(self.peak, self.open_now)
        number = self.accepted
        try:
            while request := await _read_request(reader, number):
                self.received.append(request)
                if not await self.script(request, writer):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            self.open_now -= 1
            writer.close()
            self._tasks.discard(task)


async def _read_request(reader: asyncio.StreamReader, connection: int) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed the connection
    line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = line.split(" ")
    headers = {}
    for text in lines:
        if text:
            name, value = text.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(method, target, headers, body, connection)


def answer_with(body: bytes = b'{"ok":true}') -> Script:
    """A script answering every request with ``body``, keeping the connection."""

    async def script(request: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(b"" if request.method == "HEAD" else body, headers={"Content-Length": str(len(body))}))
        return True

    return script


@contextlib.contextmanager
def full_backlog():
    """A loopback port whose accept queue is full: a connect there hangs (Linux drops the SYN)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        yield port
    finally:
        filler.close()
        listener.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl, one day)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    command += " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
