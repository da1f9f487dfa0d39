"""The request seams every handler shares: JSON out, problems for every error."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from tornado.web import RequestHandler, stream_request_body

from ..buildinfo import BuildInfo
from ..callers import Access, Door, Refusal
from ..config import Config
from ..errors import ServiceError
from ..logs import redact
from ..metrics import Metrics
from ..models import Models
from ..problems import TABLE, Code
from ..request_context import RequestContext, TraceParent, current, request_id
from ..store import DocumentStore
from ..tracing import Tracing
from . import accept
from .inflight import InFlight, Streams
from .problem import Problem, from_exception

log = logging.getLogger("data_service.web")
access_log = logging.getLogger("data_service.access")

PROBE_ROUTES = frozenset({"/_health", "/_metrics"})  # probes and scrapes: logged at debug when answered
REQUEST_ID = "X-Request-Id"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


@dataclass
class Context:
    """What handlers may use; built once by ``server.serve``."""

    config: Config
    models: Models
    store: DocumentStore
    spec: dict  # the OpenAPI document served at /openapi.json
    build: BuildInfo  # version, models digest, key ids: /_health and --version
    metrics: Metrics = field(default_factory=Metrics)  # this app's registry, served at /_metrics
    tracing: Tracing = field(default_factory=Tracing)
    inflight: InFlight = field(default_factory=InFlight)
    door: Door = field(default_factory=Door)  # who may call (callers.py)
    streams: Streams = field(default_factory=Streams)  # change streams open (web.changes)


UNBOUNDED = 2**62  # Tornado's per-connection body limit once this handler counts the bytes itself


@stream_request_body
class BaseHandler(RequestHandler):
    """Every route streams its body, so a body over ``--max-body`` is refused with a 413
    problem (Content-Length up front, chunked bodies as they arrive) and never buffered."""

    access = Access.API  # what the route needs from the door (callers.Door)
    produces: tuple[str, ...] = (JSON,)  # media types of its successful answers (errors: problem+json)

    def initialize(self, ctx: Context, route: str = "unmatched", door: Door | None = None) -> None:
        self.ctx = ctx
        self.route = route  # the route pattern: the metrics and log label (never the raw path)
        self.door = door or ctx.door  # the ops listener has its own (web.make_ops_app)
        headers = self.request.headers
        self.context = RequestContext(
            request_id(headers.get(REQUEST_ID)),
            self.request.method or "",
            route,
            TraceParent.parse(headers.get("traceparent"), headers.get("tracestate")),
        )
        self._chunks: list[bytes] = []  # the body, up to --max-body (data_received)
        self._size = 0
        self._refused = False  # answered 413 while the body was arriving
        self._refusal: Problem | None = None  # answered in place of the method (refuse)
        self.set_default_headers()
        ctx.inflight.add(self)

    def set_default_headers(self) -> None:
        """Also after ``clear()`` (error answers): every answer carries the request id."""
        if hasattr(self, "context"):
            self.set_header(REQUEST_ID, self.context.request_id)
            if self.ctx.inflight.closing:
                self.set_header("Connection", "close")

    def prepare(self) -> None:
        """Runs in the request's own task: what CouchDB calls and log lines read from here on.
        First the door (Host, token), then the body's declared size, then Accept."""
        current.set(self.context)
        self.ctx.inflight.running(self)
        self.ctx.tracing.start_request(self.context)
        self.admit()
        length = self.request.headers.get("Content-Length")
        if length is not None:
            if not length.isdigit():
                raise Problem(Code.BAD_REQUEST, "Content-Length is not a number")
            self._check_size(int(length))
        # from here this handler counts the bytes (data_received), also of chunked bodies,
        # which Tornado would otherwise cut off with a bare 400 at its own limit
        set_limit = getattr(self.request.connection, "set_max_body_size", None)
        if set_limit is not None:
            set_limit(UNBOUNDED)
        self.check_accept()

    def admit(self) -> None:
        """The door's decision for this request (callers.Door.admit) as a problem."""
        headers = self.request.headers
        refusal = self.door.admit(self.access_for(), self.request.host or "", headers.get("Authorization"))
        if refusal is None:
            return
        if refusal is Refusal.HOST:
            self.refuse(Problem(refusal.value, "this Host is not served here (see --allowed-hosts)"))
            return
        self.refuse(
            Problem(
                refusal.value,
                "send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="data-service"'},
            )
        )

    def refuse(self, problem: Problem) -> None:
        """Answer ``problem`` from ``prepare``. With a body on its way it is raised now: the
        body is never read and the connection ends after the answer. Without one it is
        raised in place of the method, once Tornado has seen the (empty) body end, so the
        connection stays open for the caller's next request."""
        headers = self.request.headers
        if headers.get("Transfer-Encoding") or headers.get("Content-Length", "0") != "0":
            problem.headers["Connection"] = "close"  # Tornado closes it after the answer
            raise problem
        if self._refusal is not None:
            return  # the first refusal (the door's) is the answer
        self._refusal = problem

        def refused(*args: Any, **kwargs: Any) -> None:
            raise problem

        setattr(self, (self.request.method or "get").lower(), refused)

    def access_for(self) -> Access:
        """What this request asks of the door; routes with a query-dependent answer override it."""
        return self.access

    def data_received(self, chunk: bytes) -> None:
        if self._refused:
            return
        self._size += len(chunk)
        if self._size > self.ctx.config.max_body:
            # answer now, without reading on: Tornado closes the connection after the
            # answer, since the body was not read to its end
            self._refused = True
            self.send_error(413, exc_info=(Problem, self._too_large(), None))
            return
        self._chunks.append(chunk)

    def _check_size(self, size: int) -> None:
        if size > self.ctx.config.max_body:
            raise self._too_large()

    def _too_large(self) -> Problem:
        return Problem(Code.PAYLOAD_TOO_LARGE, f"the limit is {self.ctx.config.max_body} bytes")

    def on_connection_close(self) -> None:
        """A body that never arrived (client gone, --body-timeout): the request is over."""
        if not self._finished and not self.request._body_future.done():
            self.ctx.inflight.remove(self)
        super().on_connection_close()

    def check_accept(self) -> None:
        """406 before any work when ``Accept`` allows neither an answer nor a problem."""
        header = self.request.headers.get("Accept")
        if not accept.acceptable(header, (*self.produces, PROBLEM_JSON)):
            self.refuse(
                Problem(
                    Code.NOT_ACCEPTABLE,
                    f"this resource answers {' or '.join(self.produces)} (problems: {PROBLEM_JSON})",
                )
            )

    def on_finish(self) -> None:
        status = self.get_status()
        self.ctx.metrics.observe_http(self.route, self.request.method or "", status, self.request.request_time())
        self.ctx.tracing.end_request(self.context, status)
        self.ctx.inflight.remove(self)

    def log_access(self) -> None:
        """The access line: the route pattern, never the path or its query string
        (``?email=...`` on a sha3-512 property is a protected value)."""
        status, ctx = self.get_status(), self.context
        level = access_level(ctx.route, status, ctx.code)
        if not access_log.isEnabledFor(level):
            return  # --log-level is above this line's: build nothing (issue 25: per-request work)
        fields = {
            "method": ctx.method,
            "route": ctx.route,
            "status": status,
            "duration_ms": round(1000.0 * self.request.request_time(), 2),
            "couchdb_ms": round(1000.0 * ctx.couchdb_seconds, 2),
            "couchdb_requests": ctx.couchdb_requests,
            "request_id": ctx.request_id,  # also when prepare never ran (Tornado refused the method)
        }
        optional = {
            "trace_id": ctx.trace_id,
            "couchdb_request_ids": ctx.couchdb_request_ids or None,
            "doc_type": ctx.doc_type,
            "doc_id": ctx.doc_id,
            "code": ctx.code,
        }
        fields.update({name: value for name, value in optional.items() if value is not None})
        access_log.log(level, "%s %s %d", ctx.method, ctx.route, status, extra={"fields": fields})

    def compute_etag(self) -> None:
        return None  # ETags are revisions, set by the handlers that have one

    def write_json(self, body: Any, status: int = 200, content_type: str = JSON) -> None:
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.finish(orjson.dumps(body))

    def allowed_methods(self) -> list[str]:
        own = type(self)
        return [m for m in self.SUPPORTED_METHODS if getattr(own, m.lower()) is not getattr(RequestHandler, m.lower())]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        problem = from_exception(exc, status_code)
        self.context.code = problem.code
        self.clear()
        for name, value in problem.headers.items():
            self.set_header(name, value)
        if problem.status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if problem.status_code == 413 and not self.request._body_future.done():
            self.set_header("Connection", "close")  # the rest of the body is not read: the connection ends
        self.write_json(problem.body(self.request.path), problem.status_code, PROBLEM_JSON)

    def log_exception(self, typ, value, tb) -> None:
        """Tracebacks only for the unexpected; expected failures get one line (5xx) or none.
        Named by route, never by ``request.uri`` (Tornado's default logs the query string)."""
        problem = from_exception(value, 500)
        if problem.code == Code.INTERNAL_ERROR and not isinstance(value, Problem):
            log.error("%s: unexpected %s", self._request_summary(), type(value).__name__, exc_info=(typ, value, tb))
        elif problem.status_code >= 500 and access_level(self.route, problem.status_code, problem.code) > logging.INFO:
            log.warning(
                "%s: %s (%s)",
                self._request_summary(),
                problem.code,
                value.logged() if isinstance(value, ServiceError) else type(value).__name__,
            )

    def _request_summary(self) -> str:
        """Tornado's own warnings name the request with this (its default has the URI with
        its query string, which may hold a protected lookup value)."""
        return f"{self.request.method} {redact(self.request.uri or '')} ({self.route})"


def access_level(route: str, status: int, code: Code | None) -> int:
    """The access line's level: answered probes and scrapes at debug (one a few seconds
    per probe), other answers and the caller's mistakes (4xx) at info, the service
    shutting down too; retryable 5xx at warning; the others (internal errors, integrity
    violations, CouchDB refusing) at error."""
    if status < 400:
        return logging.DEBUG if route in PROBE_ROUTES else logging.INFO
    if status < 500 or code == Code.DRAINING:
        return logging.INFO
    kind = TABLE.get(code) if code is not None else None
    return logging.WARNING if kind is not None and kind.retryable else logging.ERROR


class NotFoundHandler(BaseHandler):
    """Every path no route matched."""

    def prepare(self) -> None:
        super().prepare()
        self.refuse(Problem(Code.NOT_FOUND, f"no resource at {self.request.path}"))
