"""Spans of requests through a running sidecar: the caller's trace continued, spans exported as
the OTEL_* variables configure, an invalid traceparent starting a new trace."""

from __future__ import annotations

import json
import signal

import aiohttp
import pytest
from opentelemetry.trace import SpanKind
from support import install_design_docs, running_app, serving
from support.tracing import CALLER_SPAN, TRACE_ID, TRACEPARENT, in_memory


async def test_spans_of_a_request_through_the_running_app(config, db, http):
    await install_design_docs(db)
    spans, exporter = in_memory()
    async with running_app(config, spans) as (base, _):
        async with http.post(f"{base}/v1/note", json={"title": "traced"}, headers={"traceparent": TRACEPARENT}) as resp:
            assert resp.status == 201
            docid = (await resp.json())["id"]
        # no traceparent: a new trace; past the read cache, so CouchDB is asked
        async with http.get(f"{base}/v1/note/{docid}", headers={"Cache-Control": "no-cache"}) as resp:
            assert resp.status == 200
    finished = exporter.get_finished_spans()
    servers = [span for span in finished if span.kind == SpanKind.SERVER]
    assert [span.name for span in servers] == ["POST /v1/{type}", "GET /v1/{type}/{id}"]
    create, read = servers
    assert create.context.trace_id == int(TRACE_ID, 16) and create.parent.span_id == int(CALLER_SPAN, 16)
    assert read.parent is None and read.context.trace_id != create.context.trace_id
    assert create.attributes["http.response.status_code"] == 201 and create.attributes["document.id"] == docid

    def children(parent):
        return [span for span in finished if span.parent and span.parent.span_id == parent.context.span_id]

    for server in servers:
        assert children(server)
        assert all(span.kind == SpanKind.CLIENT and span.name.startswith("couchdb ") for span in children(server))
    assert "couchdb doc" in {span.name for span in children(read)}


def spans_in(text: str) -> list[dict]:
    """The console exporter's output: JSON objects one after another."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(text, at)) < len(text):
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
    return spans


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


async def test_serve_exports_spans_configured_by_otel_variables(config, db, tmp_path):
    await install_design_docs(db)
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "notes-sidecar"}
    async with serving(config, tmp_path, "--log-level=debug", env=env) as served:  # probes log at debug
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{served.base}/_health?quick=false", headers={"traceparent": TRACEPARENT}) as resp:
                assert resp.status == 200
        served.process.send_signal(signal.SIGTERM)
        assert await served.process.wait() == 0  # exporting what is buffered on the way out
    spans = spans_in(served.stderr_path.read_text())
    server = next(span for span in spans if span["kind"] == "SpanKind.SERVER")
    assert server["name"] == "GET /_health" and server["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert server["parent_id"] == f"0x{CALLER_SPAN}"
    assert server["resource"]["attributes"]["service.name"] == "notes-sidecar"
    children = [span for span in spans if span["parent_id"] == server["context"]["span_id"]]
    assert children and {span["kind"] for span in children} == {"SpanKind.CLIENT"}
    access = next(line for line in served.log_lines() if line["logger"] == "data_service.access")
    assert access["trace_id"] == TRACE_ID  # the log line and the trace meet


@pytest.mark.parametrize("header", ["not-a-traceparent", f"00-{TRACE_ID}-0000000000000000-01"])
async def test_an_invalid_traceparent_starts_a_new_trace(config, db, http, header):
    spans, exporter = in_memory()
    async with running_app(config, spans) as (base, _):
        async with http.get(f"{base}/_health", headers={"traceparent": header}) as resp:
            assert resp.status == 200
    (server,) = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]  # the feed's are roots
    assert server.parent is None and server.context.trace_id != int(TRACE_ID, 16)
