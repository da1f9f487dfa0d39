"""Trace context to CouchDB, and OpenTelemetry spans when the ``OTEL_*`` variables ask
for them (the ``otel`` extra is installed in the test environment; its absence is
simulated)."""

from __future__ import annotations

import logging
import subprocess
import sys

import orjson
from opentelemetry.trace import SpanKind
from support.tracing import CALLER_SPAN, TRACE_ID, TRACEPARENT, in_memory

from data_service import tracing
from data_service.couchdb import AsyncTransport, CouchDB, Request, Response
from data_service.metrics import Metrics
from data_service.observe import Observer
from data_service.request_context import RequestContext, TraceParent, current


class Recorder(AsyncTransport):
    """Records what the client sends; answers with a CouchDB request id header."""

    def __init__(self) -> None:
        self.sent: list[Request] = []

    async def handle(self, request: Request) -> Response:
        self.sent.append(request)
        return Response(200, orjson.dumps({"couchdb": "Welcome"}), {"X-Couch-Request-ID": "from-couch"})


async def test_couchdb_gets_the_request_id_and_the_callers_trace_context():
    transport = Recorder()
    couch = CouchDB("http://couch.invalid", transport=transport, hooks=Observer(Metrics(), tracing.Tracing()))
    await couch.server_info()  # outside a request: nothing added
    ctx = RequestContext("rid-1", "GET", "/_health", TraceParent.parse(TRACEPARENT, "k=v"))
    token = current.set(ctx)
    try:
        await couch.server_info(refresh=True)
    finally:
        current.reset(token)
    assert "X-Couch-Request-ID" not in transport.sent[0].headers and "traceparent" not in transport.sent[0].headers
    assert transport.sent[1].headers == {"traceparent": TRACEPARENT, "tracestate": "k=v", "X-Couch-Request-ID": "rid-1"}
    assert (ctx.couchdb_requests, ctx.couchdb_request_ids) == (1, ["from-couch"]) and ctx.couchdb_seconds > 0


async def test_with_spans_couchdb_gets_the_attempt_spans_traceparent():
    spans, exporter = in_memory()
    transport = Recorder()
    couch = CouchDB("http://couch.invalid", transport=transport, hooks=Observer(Metrics(), spans))
    ctx = RequestContext("rid-2", "GET", "/_health", TraceParent.parse(TRACEPARENT))
    token = current.set(ctx)
    try:
        spans.start_request(ctx)
        await couch.server_info()
        spans.end_request(ctx, 200)
    finally:
        current.reset(token)
    client, server = exporter.get_finished_spans()
    assert (server.name, server.kind) == ("GET /_health", SpanKind.SERVER)
    assert (client.name, client.kind) == ("couchdb server", SpanKind.CLIENT)
    assert (server.parent.span_id, client.parent.span_id) == (int(CALLER_SPAN, 16), server.context.span_id)
    assert {span.context.trace_id for span in (client, server)} == {int(TRACE_ID, 16)}
    sent = transport.sent[0].headers["traceparent"]
    assert sent == f"00-{TRACE_ID}-{client.context.span_id:016x}-01"
    assert client.attributes["http.response.status_code"] == 200 and ctx.trace_id == TRACE_ID


def test_spans_only_when_the_variables_ask():
    assert not tracing.spans_wanted({})
    assert not tracing.spans_wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_SERVICE_NAME": "x"})
    assert tracing.spans_wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert tracing.spans_wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not tracing.spans_wanted({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
    assert type(tracing.from_env({})) is tracing.Tracing
    configured = tracing.from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(configured, tracing.OtelTracing)
    assert configured.provider.resource.attributes["service.name"] == "data-service"
    configured.shutdown()


def test_no_hard_dependency(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # what an absent extra looks like
    with caplog.at_level(logging.WARNING, logger="data_service"):
        assert type(tracing.from_env({"OTEL_TRACES_EXPORTER": "console"})) is tracing.Tracing
    assert "the otel extra is not installed: no spans" in caplog.text
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, data_service.cli, data_service.server; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 0 and "tornado" in loaded.stdout and "opentelemetry" not in loaded.stdout
