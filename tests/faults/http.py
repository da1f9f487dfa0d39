"""HTTP/1.1 framing, as much of it as a proxy needs (RFC 9112 §6): where each request and
each answer on a keep-alive connection begins and ends. Messages are passed on as the
bytes that came; only the start line and the headers are read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

PIECE = 65536  # bytes read at a time from a body

# How a body is delimited: none, a Content-Length, chunked, or the end of the connection.
NONE, LENGTH, CHUNKED, UNTIL_CLOSE = "none", "length", "chunked", "until-close"


class FramingError(Exception):
    """Not an HTTP/1.1 message this proxy can delimit."""


@dataclass(frozen=True)
class Head:
    """A start line and its headers; ``raw`` is every byte of them, through the blank line."""

    start: str
    headers: tuple[tuple[str, str], ...]
    raw: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Head:
        lines = raw.decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise FramingError(f"not a header line: {line[:80]!r}")
                headers.append((name.strip().lower(), value.strip()))
        return cls(lines[0], tuple(headers), raw)

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        values = [value for key, value in self.headers if key == name.lower()]
        return values[-1] if values else None

    def _tokens(self, name: str) -> set[str]:
        return {token.strip().lower() for key, value in self.headers if key == name for token in value.split(",")}

    @property
    def version(self) -> str:
        return (
            self.start.split(" ", 2)[0] if self.start.startswith("HTTP/") else self.start.rsplit(" ", 1)[-1]
        ).upper()

    @property
    def closes(self) -> bool:
        """The connection ends after this message (``Connection: close``, or HTTP/1.0
        without keep-alive)."""
        connection = self._tokens("connection")
        return "close" in connection or (self.version == "HTTP/1.0" and "keep-alive" not in connection)

    def framing(self) -> str:
        """Chunked or Content-Length; a request without either has no body."""
        if "chunked" in self._tokens("transfer-encoding"):
            return CHUNKED
        if self.header("content-length") is not None:
            return LENGTH
        return NONE

    @property
    def length(self) -> int:
        try:
            return int(self.header("content-length") or 0)
        except ValueError:
            raise FramingError("Content-Length is not a number") from None


@dataclass(frozen=True)
class Request:
    head: Head

    @property
    def method(self) -> str:
        return self.head.start.split(" ", 1)[0]

    @property
    def target(self) -> str:
        """What the request line names: path and query, as sent."""
        parts = self.head.start.split(" ")
        if len(parts) != 3:
            raise FramingError(f"not a request line: {self.head.start[:80]!r}")
        return parts[1]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    def framing(self) -> str:
        return self.head.framing()


@dataclass(frozen=True)
class Response:
    head: Head

    @property
    def status(self) -> int:
        try:
            return int(self.head.start.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise FramingError(f"not a status line: {self.head.start[:80]!r}") from None

    @property
    def interim(self) -> bool:
        """A 1xx answer: the final one follows on the same connection."""
        return 100 <= self.status < 200

    def framing(self, method: str) -> str:
        """RFC 9112 §6.3: no body after HEAD, 1xx, 204, 304; else chunked, Content-Length,
        or everything until the server closes."""
        if method == "HEAD" or self.interim or self.status in (204, 304):
            return NONE
        framing = self.head.framing()
        return UNTIL_CLOSE if framing == NONE else framing


async def read_head(reader: asyncio.StreamReader, first: bytes = b"") -> Head | None:
    """The next start line and headers (``first``: its first byte, already read); None when
    the peer closed before sending a byte."""
    try:
        raw = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not (first + exc.partial).strip():
            return None
        raise FramingError("the connection ended inside a message head") from None
    except asyncio.LimitOverrunError:
        raise FramingError("message head too long") from None
    return Head.parse(raw)


async def body(reader: asyncio.StreamReader, framing: str, length: int = 0) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, chunk framing included (passed on unchanged)."""
    if framing == LENGTH:
        async for piece in _exactly(reader, length):
            yield piece
    elif framing == CHUNKED:
        async for piece in _chunks(reader):
            yield piece
    elif framing == UNTIL_CLOSE:
        while piece := await reader.read(PIECE):
            yield piece


async def _exactly(reader: asyncio.StreamReader, count: int) -> AsyncIterator[bytes]:
    while count:
        piece = await reader.read(min(count, PIECE))
        if not piece:
            raise FramingError("the connection ended inside a body")
        count -= len(piece)
        yield piece


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise FramingError("the connection ended inside a chunked body") from None


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        line = await _line(reader)
        yield line
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise FramingError(f"not a chunk size: {line[:40]!r}") from None
        if size == 0:
            while (trailer := await _line(reader)) != b"\r\n":
                yield trailer
            yield trailer
            return
        async for piece in _exactly(reader, size + 2):  # the data and its CRLF
            yield piece
