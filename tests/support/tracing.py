"""A caller's trace context and spans recorded in memory (OpenTelemetry's SDK)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from data_service import tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


CALLER_SPAN = "00f067aa0ba902b7"


TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


def in_memory() -> tuple[tracing.OtelTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracing.OtelTracing(provider), exporter
