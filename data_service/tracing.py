"""Trace context: W3C ``traceparent``/``tracestate`` in, passed on to CouchDB; and
OpenTelemetry spans when the ``otel`` extra is installed and the standard ``OTEL_*``
variables ask for them. Off by default, and no hard dependency: the SDK is imported
only when spans are wanted.

With spans there is one SERVER span per HTTP request (a child of the caller's
``traceparent``) and one CLIENT span per CouchDB request attempt under it (each
attempt is its own span, as OpenTelemetry's HTTP conventions say); CouchDB gets
the attempt span's ``traceparent``. Without spans the caller's trace context is
passed on to CouchDB unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from . import __version__
from .couchdb import Attempt
from .request_context import RequestContext

log = logging.getLogger("data_service")

SERVICE_NAME = "data-service"


class Tracing:
    """No spans: the caller's trace context goes to CouchDB as it came."""

    def start_request(self, ctx: RequestContext) -> None:
        """Begin the request's span (``ctx.span``)."""

    def end_request(self, ctx: RequestContext, status: int) -> None:
        """End it with the answered status."""

    @contextlib.contextmanager
    def couchdb_attempt(self, ctx: RequestContext | None, attempt: Attempt, operation: str) -> Iterator[dict[str, str]]:
        """Yields the trace headers for one CouchDB request attempt."""
        yield ctx.trace.headers() if ctx is not None and ctx.trace is not None else {}

    def shutdown(self) -> None:
        """Export what is buffered (at exit)."""


class OtelTracing(Tracing):
    """Spans through an OpenTelemetry ``TracerProvider`` (``from_env`` builds one)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("data_service", __version__)
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()

    def start_request(self, ctx: RequestContext) -> None:
        parent = self._propagator.extract(ctx.trace.headers()) if ctx.trace is not None else None
        ctx.span = self.tracer.start_span(
            f"{ctx.method} {ctx.route}",
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={"http.request.method": ctx.method, "http.route": ctx.route, "request.id": ctx.request_id},
        )

    def end_request(self, ctx: RequestContext, status: int) -> None:
        span = ctx.span
        if span is None:
            return
        span.set_attribute("http.response.status_code", status)
        for name, value in (("document.type", ctx.doc_type), ("document.id", ctx.doc_id), ("error.type", ctx.code)):
            if value is not None:
                span.set_attribute(name, value)
        if status >= 500:
            span.set_status(self._trace.StatusCode.ERROR)
        span.end()

    @contextlib.contextmanager
    def couchdb_attempt(self, ctx: RequestContext | None, attempt: Attempt, operation: str) -> Iterator[dict[str, str]]:
        parent = self._trace.set_span_in_context(ctx.span) if ctx is not None and ctx.span is not None else None
        span = self.tracer.start_span(
            f"couchdb {operation}",
            context=parent,
            kind=self._trace.SpanKind.CLIENT,
            attributes={
                "db.system.name": "couchdb",
                "db.operation.name": operation,
                "http.request.method": attempt.request.method,
            },
        )
        headers: dict[str, str] = {}
        self._propagator.inject(headers, context=self._trace.set_span_in_context(span))
        try:
            yield headers
        finally:
            if attempt.response is None:
                span.set_status(self._trace.StatusCode.ERROR, "no response")
            else:
                span.set_attribute("http.response.status_code", attempt.response.status)
                if attempt.response.status >= 500:
                    span.set_status(self._trace.StatusCode.ERROR)
            span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


def spans_wanted(env: Mapping[str, str]) -> bool:
    """The standard variables ask for spans: an exporter other than ``none`` or an OTLP
    endpoint, and the SDK not disabled. (Unlike the SDK's default, nothing set means off.)"""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {name.strip() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")} - {"", "none"}
    return bool(exporters or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def from_env(env: Mapping[str, str] = os.environ) -> Tracing:
    """``OtelTracing`` when the variables ask for spans and the extra is installed."""
    if not spans_wanted(env):
        return Tracing()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* variables ask for spans, but the otel extra is not installed: no spans")
        return Tracing()
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attributes))  # reads OTEL_RESOURCE_ATTRIBUTES, sampler vars
    for exporter in _exporters(env):
        provider.add_span_processor(BatchSpanProcessor(exporter))  # reads OTEL_BSP_*
    return OtelTracing(provider)


def _exporters(env: Mapping[str, str]) -> list[Any]:
    names = [name.strip() for name in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    exporters: list[Any] = []
    for name in names:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter(out=sys.stderr))  # stdout carries the log
        elif name == "otlp":
            # http/protobuf, the extra's exporter; it reads OTEL_EXPORTER_OTLP_* itself
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name != "none":
            log.warning("OTEL_TRACES_EXPORTER: %r is not supported (otlp, console, none)", name)
    return exporters
