"""HTTP handlers: they translate HTTP to calls and results back, nothing more."""

from __future__ import annotations

import tornado.web

from .base import BaseHandler, Context, InFlight, NotFoundHandler, Streams
from .changes import ChangesHandler
from .documents import BulkHandler, CollectionHandler, DocumentHandler, OpenApiHandler, TypesHandler, VerifyHandler
from .health import HealthHandler
from .metrics import DatabaseMetricsHandler, MetricsHandler


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's hook for the access line; every handler here is a ``BaseHandler``."""
    if isinstance(handler, BaseHandler):
        handler.log_access()


def make_app(ctx: Context) -> tornado.web.Application:
    routes = [  # (pattern, handler, route name: the label metrics use instead of the raw path)
        (r"/_health", HealthHandler, "/_health"),
        (r"/_metrics", MetricsHandler, "/_metrics"),
        (r"/_metrics/database", DatabaseMetricsHandler, "/_metrics/database"),
        (r"/openapi.json", OpenApiHandler, "/openapi.json"),
        (r"/v1/_types", TypesHandler, "/v1/_types"),
        (r"/v1/([^/]+)", CollectionHandler, "/v1/{type}"),
        (r"/v1/([^/]+)/_changes", ChangesHandler, "/v1/{type}/_changes"),
        (r"/v1/([^/]+)/_bulk", BulkHandler, "/v1/{type}/_bulk"),
        (r"/v1/([^/]+)/([^/]+)", DocumentHandler, "/v1/{type}/{id}"),
        (r"/v1/([^/]+)/([^/]+)/verify", VerifyHandler, "/v1/{type}/{id}/verify"),
    ]
    return tornado.web.Application(
        [(pattern, handler, {"ctx": ctx, "route": route}) for pattern, handler, route in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        compress_response=False,
        log_function=log_request,
    )


__all__ = ["Context", "InFlight", "Streams", "make_app"]
