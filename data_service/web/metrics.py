"""``GET /_metrics`` (Prometheus text or OpenMetrics, as ``Accept`` asks) and
``GET /_metrics/database`` (JSON, cached)."""

from __future__ import annotations

from ..callers import Access
from ..metrics import MEDIA_TYPES
from .base import BaseHandler


class MetricsHandler(BaseHandler):
    access = Access.METRICS  # --open-metrics opens it
    produces = MEDIA_TYPES

    def get(self) -> None:
        body, content_type = self.ctx.metrics.exposition(self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.finish(body)


class DatabaseMetricsHandler(BaseHandler):
    async def get(self) -> None:
        ctx = self.ctx
        self.write_json(await ctx.metrics.database_report.get(lambda: ctx.store.database_report(ctx.models)))
