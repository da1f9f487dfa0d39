"""HTTP handlers: they translate HTTP to calls and results back, nothing more."""

from __future__ import annotations

import tornado.web

from .base import Context, NotFoundHandler
from .health import HealthHandler


def make_app(ctx: Context) -> tornado.web.Application:
    routes = [
        (r"/_health", HealthHandler, {"ctx": ctx}),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        compress_response=False,
    )


__all__ = ["Context", "make_app"]
