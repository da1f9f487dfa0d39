"""The request seams every handler shares: JSON out, problems for every error."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from tornado.web import RequestHandler

from ..config import Config
from ..couchdb import CouchDBError
from ..metrics import Metrics
from ..models import Models
from ..store import DocumentStore
from .problem import Problem, from_exception

log = logging.getLogger("data_service.web")


@dataclass
class Context:
    """What handlers may use; built once by ``server.serve``."""

    config: Config
    models: Models
    store: DocumentStore
    spec: dict  # the OpenAPI document served at /openapi.json
    metrics: Metrics = field(default_factory=Metrics)  # this app's registry, served at /_metrics


class BaseHandler(RequestHandler):
    def initialize(self, ctx: Context, route: str = "unmatched") -> None:
        self.ctx = ctx
        self.route = route  # the route pattern: the metrics label (never the raw path)

    def on_finish(self) -> None:
        self.ctx.metrics.observe_http(
            self.route, self.request.method or "", self.get_status(), self.request.request_time()
        )

    def compute_etag(self) -> None:
        return None  # ETags are revisions, set by the handlers that have one

    def write_json(self, body: Any, status: int = 200, content_type: str = "application/json") -> None:
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.finish(orjson.dumps(body))

    def allowed_methods(self) -> list[str]:
        own = type(self)
        return [m for m in self.SUPPORTED_METHODS if getattr(own, m.lower()) is not getattr(RequestHandler, m.lower())]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        problem = from_exception(exc, status_code)
        self.clear()
        for name, value in problem.headers.items():
            self.set_header(name, value)
        if problem.status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.write_json(problem.body(self.request.path), problem.status_code, "application/problem+json")

    def log_exception(self, typ, value, tb) -> None:
        """Tracebacks only for the unexpected; expected failures get one line (5xx) or none."""
        problem = from_exception(value, 500)
        if problem.code == "internal_error" and not isinstance(value, Problem):
            super().log_exception(typ, value, tb)
        elif problem.status_code >= 500:
            log.warning(
                "%s %s: %s (%s)",
                self.request.method,
                self.request.path,
                problem.code,
                value if isinstance(value, CouchDBError) else type(value).__name__,
            )


class NotFoundHandler(BaseHandler):
    """Every path no route matched."""

    def prepare(self) -> None:
        raise Problem("not_found", f"no resource at {self.request.path}")
