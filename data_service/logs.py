"""Log output: one JSON object per line (``--log-format=json``, the default when the log
stream is not a terminal) or human text, both carrying the current request's id.

Every record gets ``time``, ``level``, ``logger``, ``message``; inside a request also
``request_id`` and ``trace_id`` (from ``request_context.current``); the access line
adds its ``fields`` (``web.base``). No line may hold a query string or a protected
value: handlers log route patterns, never paths or bodies, and both formatters cut
query strings out of whatever else reaches them (``redact_text``: Tornado's own
lines, exception messages that quote a URL).
"""

from __future__ import annotations

import enum
import logging
import re
import sys
import time
from typing import Any, TextIO

import orjson

from .request_context import current

# a query string attached to a path or URL: what follows "?" up to the end of the token
_QUERY = re.compile(r"(/[^\s?#\"'<>]*)\?[^\s\"'<>]*")
REDACTED = "?[redacted]"


def redact(uri: str) -> str:
    """``uri`` without its query string (``/v1/user?email=...`` → ``/v1/user?[redacted]``):
    a query may hold a protected lookup value."""
    path, mark, _ = uri.partition("?")
    return path + REDACTED if mark else path


def redact_text(text: str) -> str:
    """Every query string in free text (messages, Tornado's own lines, tracebacks whose
    exceptions quote a URL) replaced as ``redact`` does."""
    return _QUERY.sub(lambda m: m.group(1) + REDACTED, text) if "?" in text else text


class LogFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's request context and structured fields, JSON-ready."""
    out: dict[str, Any] = {}
    ctx = current.get()
    if ctx is not None:
        out["request_id"] = ctx.request_id
        if trace_id := ctx.trace_id:
            out["trace_id"] = trace_id
    out.update(getattr(record, "fields", None) or {})
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
            **fields_of(record),
        }
        if record.exc_info:
            line["exception"] = redact_text(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in fields_of(record).items() if v is not None and v != [])
        return super().formatMessage(record) + (f" [{extra}]" if extra else "")

    def format(self, record: logging.LogRecord) -> str:
        """The whole line: another handler may have cached the traceback text unredacted."""
        return redact_text(super().format(record))


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def default_format(stream: TextIO) -> LogFormat:
    """Text for a person at a terminal, JSON for everything that collects logs."""
    return LogFormat.TEXT if stream.isatty() else LogFormat.JSON


def setup(level: str, log_format: LogFormat | None = None, stream: TextIO = sys.stderr) -> None:
    """Send every logger (Tornado's too) through one handler on ``stream``."""
    handler = logging.StreamHandler(stream)
    chosen = log_format or default_format(stream)
    handler.setFormatter(JsonFormatter() if chosen is LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
