"""HTTP handlers: they translate HTTP to calls and results back, nothing more."""

from __future__ import annotations

import tornado.web

from .base import Context, NotFoundHandler
from .documents import CollectionHandler, DocumentHandler, OpenApiHandler, TypesHandler, VerifyHandler
from .health import HealthHandler


def make_app(ctx: Context) -> tornado.web.Application:
    routes = [
        (r"/_health", HealthHandler),
        (r"/openapi.json", OpenApiHandler),
        (r"/v1/_types", TypesHandler),
        (r"/v1/([^/]+)", CollectionHandler),
        (r"/v1/([^/]+)/([^/]+)", DocumentHandler),
        (r"/v1/([^/]+)/([^/]+)/verify", VerifyHandler),
    ]
    return tornado.web.Application(
        [(pattern, handler, {"ctx": ctx}) for pattern, handler in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        compress_response=False,
    )


__all__ = ["Context", "make_app"]
