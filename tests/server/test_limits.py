"""Limits on every route: bodies over --max-body get a 413 problem without being buffered
(Content-Length up front, chunked as they arrive), header size, idle and body timeouts;
and no log line carries a query string, tracebacks included."""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import replace

import orjson
import pytest
from support import running_app

from data_service.logs import JsonFormatter, TextFormatter

LIMIT = 1024
PROBLEM = "application/problem+json"


async def exchange(port: int, *parts: bytes, wait: float = 10.0) -> bytes:
    """Send ``parts`` on a fresh connection, then read until the server closes it (or
    ``wait`` seconds pass): everything the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        received = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            try:
                data = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            except (TimeoutError, ConnectionError):
                break
            if not data:
                return received
            received += data
        raise AssertionError(f"the connection stayed open; received {received[:300]!r}")
    finally:
        writer.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def request(method: str, path: str, *headers: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]).encode()


@pytest.fixture
async def limited(config):
    """The app with a 1 KiB body limit and short timeouts; yields its port."""
    small = replace(config, max_body=LIMIT, max_header_size=2048, idle_timeout=0.5, body_timeout=0.5)
    async with running_app(small) as (base, _):
        yield int(base.rsplit(":", 1)[1])


@pytest.mark.parametrize("path", ["/_health", "/nowhere", "/v1/user"])
async def test_a_declared_length_over_the_limit_is_413_on_every_route(limited, path):
    # only the headers are sent: the answer comes before any of the body is read
    raw = await exchange(limited, request("POST", path, "Content-Length: 90000000", "Content-Type: application/json"))
    status, headers, body = parse(raw)
    assert status == 413 and headers["content-type"] == PROBLEM and headers["connection"] == "close"
    assert orjson.loads(body)["code"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/_health", "/v1/user", "/nowhere"])
async def test_a_chunked_body_over_the_limit_is_413_as_it_arrives(limited, path):
    chunk = b"%x\r\n%s\r\n" % (600, b"x" * 600)
    head = request("POST", path, "Transfer-Encoding: chunked", "Content-Type: application/json")
    raw = await exchange(limited, head, chunk, chunk)  # 1,200 bytes, no last chunk: it is never read to its end
    status, headers, body = parse(raw)
    if path == "/nowhere":  # refused before its body is read at all; the connection ends likewise
        assert (status, orjson.loads(body)["code"], headers["connection"]) == (404, "not_found", "close")
        return
    assert status == 413 and headers["content-type"] == PROBLEM and headers["connection"] == "close"
    assert orjson.loads(body)["code"] == "payload_too_large"


async def test_a_body_within_the_limit_is_read_and_answered(limited):
    body = b"{}"
    head = request("POST", "/_health", f"Content-Length: {len(body)}", "Connection: close")
    status, headers, answer = parse(await exchange(limited, head + body))
    assert status == 405 and headers["allow"] == "GET" and orjson.loads(answer)["code"] == "method_not_allowed"
    chunked = request("POST", "/nowhere", "Transfer-Encoding: chunked", "Connection: close")
    status, _, answer = parse(await exchange(limited, chunked + b"2\r\n{}\r\n0\r\n\r\n"))
    assert status == 404 and orjson.loads(answer)["code"] == "not_found"


async def test_an_idle_connection_is_closed(limited):
    # a request first: the connection works, then nothing more arrives on it
    assert (await exchange(limited, request("GET", "/_health"), wait=10.0)).startswith(b"HTTP/1.1 200")
    assert await exchange(limited, wait=10.0) == b""  # nothing sent at all: closed after --idle-timeout


async def test_a_body_that_stops_arriving_is_cut_off(limited):
    head = request("POST", "/v1/user", "Content-Length: 100", "Content-Type: application/json")
    assert await exchange(limited, head + b'{"na', wait=10.0) == b""


async def test_headers_over_the_limit_close_the_connection(limited):
    # Tornado's own refusal: no answer, the connection is closed (README: limits)
    assert await exchange(limited, request("GET", "/_health", "X-Padding: " + "p" * 4000)) == b""
    assert (await exchange(limited, request("GET", "/_health", "X-Padding: " + "p" * 500))).startswith(b"HTTP/1.1 200")


# -- redaction ----------------------------------------------------------------------

SECRET = "secret@x"


@pytest.fixture
def captured():
    """Every line logged during the test, through both formatters."""
    streams = [io.StringIO(), io.StringIO()]
    handlers = [logging.StreamHandler(stream) for stream in streams]
    handlers[0].setFormatter(JsonFormatter())
    handlers[1].setFormatter(TextFormatter())
    root = logging.getLogger()
    level = root.level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lambda: "".join(stream.getvalue() for stream in streams)
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)


async def test_an_unexpected_error_logs_no_query_string(config, http, captured, monkeypatch):
    async with running_app(config) as (base, ctx):
        uri = f"{base}/v1/user?email={SECRET}"

        async def broken(*args, **kwargs):  # an exception quoting the URL, as HTTP libraries' do
            raise RuntimeError(f"cannot fetch {uri}")

        monkeypatch.setattr(ctx.store, "query", broken)
        async with http.get(uri) as resp:
            body = await resp.json(content_type=None)
        assert resp.status == 500 and body["code"] == "internal_error"
        # Tornado's own: an unknown method with the secret in the query, a bad path encoding
        async with http.request("PROPFIND", f"{base}/v1/user?email={SECRET}") as resp:
            assert resp.status == 405
        async with http.get(f"{base}/v1/%ff?email={SECRET}") as resp:
            assert resp.status in (400, 404)
    text = captured()
    assert "Traceback" in text and "RuntimeError" in text  # the unexpected error was logged, with its traceback
    assert "/v1/user?[redacted]" in text
    for leak in (SECRET, "secret%40x", "email="):
        assert leak not in text, f"{leak!r} reached the log"


async def test_protocol_errors_tornado_answers_itself_stay_bare_400s(limited):
    # README (Trust model, limits): Tornado hard-codes these answers and closes the connection
    both = request("POST", "/_health", "Content-Length: 2", "Transfer-Encoding: chunked")
    bad_chunk = request("POST", "/_health", "Transfer-Encoding: chunked") + b"zz\r\n{}\r\n0\r\n\r\n"
    for raw in (both + b"{}", bad_chunk):
        assert await exchange(limited, raw) == b"HTTP/1.1 400 Bad Request\r\n\r\n"
