"""What the in-memory CouchDB shares: its error answers, JSON and query parameters."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson


class HttpError(Exception):
    """An error answer: ``{"error": error, "reason": reason}`` with ``status``."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(status, error, reason)
        self.status, self.error, self.reason = status, error, reason


def bad_request(reason: str, error: str = "bad_request") -> HttpError:
    return HttpError(400, error, reason)


def missing(reason: str = "missing") -> HttpError:
    return HttpError(404, "not_found", reason)


def conflict() -> HttpError:
    return HttpError(409, "conflict", "Document update conflict.")


def no_database() -> HttpError:
    return HttpError(404, "not_found", "Database does not exist.")


def not_implemented(what: str) -> HttpError:
    """What the in-memory CouchDB does not emulate (views, Mango, attachments...): a test
    that needs it must run against a server."""
    return HttpError(501, "not_implemented", f"{what} is not emulated by the in-memory CouchDB: use a server")


_BIG_NUMBER = re.compile(rb"\d{16,}")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
SLOW: Any = object()


def _big_number(body: bytes) -> bool:
    """A number of 16 digits or more (orjson may not hold it exactly), outside strings."""
    return bool(_BIG_NUMBER.search(body)) and bool(_BIG_NUMBER.search(_STRING.sub(b'""', body)))


def parse(body: bytes) -> Any:
    """``body`` parsed, if orjson can read it exactly and write any answer holding it (a
    document is answered at most six levels deeper than it was sent: in a ``_bulk_get``
    result); ``SLOW`` if not (``rawjson`` reads documents orjson cannot hold)."""
    if _big_number(body):
        return SLOW
    try:
        value = orjson.loads(body)
        orjson.dumps([[[[[[value]]]]]])
    except (orjson.JSONDecodeError, TypeError):
        return SLOW
    return value


def loads(body: bytes) -> Any:
    """A body that is no document (or holds none): what orjson cannot hold is refused."""
    value = parse(body)
    if value is SLOW:
        raise bad_request("invalid UTF-8 JSON")
    return value


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class Params:
    """A request's query parameters, read the way CouchDB reads them."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values = dict(pairs)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def text(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name, default)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self._values.get(name)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise bad_request(f'Invalid boolean parameter: "{value}"', "query_parse_error")
        return value == "true"

    def integer(self, name: str, default: int | None = None) -> int | None:
        """A non-negative integer (``limit``, ``skip``, ``timeout``, ``count``)."""
        value = self._values.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise bad_request(f'Invalid value for integer: "{value}"', "query_parse_error") from None
        if number < 0:
            raise bad_request(f'Invalid value for positive integer: "{value}"', "query_parse_error")
        return number

    def json(self, *names: str, default: Any = None) -> Any:
        """The first of ``names`` given, parsed as JSON (``startkey``/``start_key``...)."""
        for name in names:
            if name in self._values:
                return loads(self._values[name].encode())
        return default
