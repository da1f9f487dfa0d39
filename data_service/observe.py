"""The CouchDB client's hooks (``couchdb.Hooks``): what every request attempt to CouchDB
carries out and leaves behind.

Out: the current request's id as ``X-Couch-Request-ID`` (CouchDB logs it) and its trace
context. Back: the metrics, the request's CouchDB time, request count and the
``X-Couch-Request-ID`` CouchDB answered (for the access log line), and a span.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace

from .couchdb import Attempt, Hooks, Request
from .metrics import Metrics, couchdb_operation
from .request_context import current
from .tracing import Tracing

COUCH_REQUEST_ID = "X-Couch-Request-ID"


class Observer(Hooks):
    def __init__(self, metrics: Metrics, tracing: Tracing) -> None:
        self.metrics, self.tracing = metrics, tracing

    @contextlib.contextmanager
    def attempt(self, request: Request) -> Iterator[Attempt]:
        ctx = current.get()
        seen = Attempt(request)
        started, operation = time.perf_counter(), couchdb_operation(request.path)
        with self.tracing.couchdb_attempt(ctx, seen, operation) as trace_headers:
            headers = {**request.headers, **trace_headers}
            if ctx is not None:
                headers[COUCH_REQUEST_ID] = ctx.request_id
            seen.request = replace(request, headers=headers)
            try:
                yield seen
            finally:
                seconds = time.perf_counter() - started
                response = seen.response
                status = response.status if response is not None else None
                self.metrics.observe_couchdb(request.method, operation, status, seconds)
                if ctx is not None:
                    ctx.couchdb_requests += 1
                    ctx.couchdb_seconds += seconds
                    answered = response is not None and _header(response.headers, COUCH_REQUEST_ID)
                    if answered and answered not in ctx.couchdb_request_ids:  # CouchDB echoes ours
                        ctx.couchdb_request_ids.append(answered)


def _header(headers, name: str) -> str | None:
    """Case-insensitive lookup (the transport hands headers as a plain mapping)."""
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)
