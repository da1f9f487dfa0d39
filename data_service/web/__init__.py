"""HTTP handlers: they translate HTTP to calls and results back, nothing more."""

from __future__ import annotations

import tornado.web

from ..callers import Door
from .base import BaseHandler, Context, NotFoundHandler
from .changes import ChangesHandler
from .docs import ASSET_ROUTE, DocsAssetHandler, DocsHandler
from .documents import BulkHandler, CollectionHandler, DocumentHandler, OpenApiHandler, TypesHandler, VerifyHandler
from .health import HealthHandler
from .inflight import InFlight, Streams
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
        (r"/_docs", DocsHandler, "/_docs"),
        (ASSET_ROUTE, DocsAssetHandler, "/_docs/{file}"),
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


# The ops listener (--ops-listen) answers probes and scrapes without a token and for any
# Host (kubelet and Prometheus name the pod IP): it serves nothing else.
OPS_DOOR = Door(tokens=None, allowed_hosts=None)


def make_ops_app(ctx: Context) -> tornado.web.Application:
    """Liveness, readiness and metrics only; every other path is a 404."""
    routes = [(r"/_health", HealthHandler, "/_health"), (r"/_metrics", MetricsHandler, "/_metrics")]
    return tornado.web.Application(
        [(pattern, handler, {"ctx": ctx, "route": route, "door": OPS_DOOR}) for pattern, handler, route in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx, "door": OPS_DOOR},
        compress_response=False,
        log_function=log_request,
    )


__all__ = ["Context", "InFlight", "Streams", "make_app", "make_ops_app"]
