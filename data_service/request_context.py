"""What one HTTP request's log line, CouchDB calls and spans share (pure).

The handler creates a ``RequestContext`` and puts it in the ``current`` context
variable in its ``prepare`` (``web.base``); the CouchDB client's hooks
(``observe.py``) and the log formatter (``logs.py``) read it from there, so no
request id is threaded through call signatures. The variable holds a mutable
object: tasks the request starts (``asyncio.gather``) copy the variable, not the
object, so their CouchDB calls are counted on the same request.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .problems import Code

# What we accept as a caller's X-Request-Id: visible ASCII, bounded; it is echoed,
# logged and sent to CouchDB as a header, so nothing else may pass.
REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
# W3C Trace Context: version 00 (future versions are read as 00, as the spec says).
TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
TRACESTATE_MAX = 512


def request_id(header: str | None) -> str:
    """The caller's id when it is acceptable, else a new one."""
    if header is not None and REQUEST_ID.match(header):
        return header
    return os.urandom(16).hex()  # 32 hex digits, as uuid4().hex, at a third of its cost (issue 25)


@dataclass(frozen=True)
class TraceParent:
    """A W3C ``traceparent`` (and the ``tracestate`` that came with it)."""

    trace_id: str
    parent_id: str
    flags: str
    state: str | None = None

    @classmethod
    def parse(cls, traceparent: str | None, tracestate: str | None = None) -> TraceParent | None:
        """None for a missing or invalid header (the spec says: start a new trace)."""
        match = TRACEPARENT.match((traceparent or "").strip().lower())
        if match is None:
            return None
        version, trace_id, parent_id, flags, rest = match.groups()
        if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
            return None
        state = (tracestate or "").strip()
        return cls(trace_id, parent_id, flags, state if 0 < len(state) <= TRACESTATE_MAX else None)

    def headers(self) -> dict[str, str]:
        """Passed on unchanged when this service makes no spans of its own."""
        headers = {"traceparent": f"00-{self.trace_id}-{self.parent_id}-{self.flags}"}
        if self.state:
            headers["tracestate"] = self.state
        return headers


@dataclass
class RequestContext:
    request_id: str
    method: str
    route: str  # the route pattern, never the requested path (which may carry a query)
    trace: TraceParent | None = None
    span: Any = None  # the request's OpenTelemetry span when tracing is on
    doc_type: str | None = None
    doc_id: str | None = None
    code: Code | None = None  # the problem code answered, if any
    couchdb_requests: int = 0
    couchdb_seconds: float = 0.0
    couchdb_request_ids: list[str] = field(default_factory=list)  # CouchDB's X-Couch-Request-ID answers

    @property
    def trace_id(self) -> str | None:
        if self.span is not None:
            return format(self.span.get_span_context().trace_id, "032x")
        return self.trace.trace_id if self.trace else None


current: ContextVar[RequestContext | None] = ContextVar("data_service_request", default=None)
