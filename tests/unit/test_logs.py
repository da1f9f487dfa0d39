"""Structured logs and request ids: the formatters and header rules (the log of a run of
real requests is tests/server/test_run_log.py's)."""

from __future__ import annotations

import io
import json
import logging
import re

from support.tracing import TRACEPARENT

from data_service.logs import JsonFormatter, LogFormat, TextFormatter, default_format, setup
from data_service.request_context import RequestContext, TraceParent, current, request_id


def test_request_ids_accepted_or_replaced():
    assert request_id("abc-123_X.y") == "abc-123_X.y"
    for bad in (None, "", "with space", "x" * 129, "caf\u00e9", "line\nbreak"):
        replaced = request_id(bad)
        assert re.fullmatch("[0-9a-f]{32}", replaced), bad


def test_traceparent_parsing():
    parsed = TraceParent.parse(TRACEPARENT, "vendor=opaque")
    assert parsed == TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01", "vendor=opaque")
    assert parsed.headers() == {"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"}
    assert TraceParent.parse(TRACEPARENT.upper()) == TraceParent(*TRACEPARENT.split("-")[1:])
    future = TraceParent.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
    assert future is not None and future.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (
        None,
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ):
        assert TraceParent.parse(bad) is None, bad


def record(message: str, **fields) -> logging.LogRecord:
    made = logging.LogRecord("data_service.access", logging.INFO, __file__, 1, message, (), None)
    made.fields = fields
    return made


def test_formatters_add_the_current_request():
    token = current.set(RequestContext("rid-7", "GET", "/_health", TraceParent.parse(TRACEPARENT)))
    try:
        line = json.loads(JsonFormatter().format(record("GET /_health 200", status=200)))
        text = TextFormatter().format(record("GET /_health 200", status=200))
    finally:
        current.reset(token)
    assert line["request_id"] == "rid-7" and line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["status"] == 200 and line["level"] == "info" and line["logger"] == "data_service.access"
    assert text.endswith("GET /_health 200 [request_id=rid-7 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 status=200]")
    outside = json.loads(JsonFormatter().format(record("startup")))
    assert "request_id" not in outside and outside["message"] == "startup"


def test_json_unless_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert default_format(io.StringIO()) is LogFormat.JSON
    assert default_format(Terminal()) is LogFormat.TEXT
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup("warning", None, stream)
        logging.getLogger("tornado.general").warning("from tornado")
        logging.getLogger("data_service").info("below the level")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [("tornado.general", "from tornado")]
