"""``GET /_metrics`` (Prometheus text) and ``GET /_metrics/database`` (JSON, cached)."""

from __future__ import annotations

from ..callers import Access
from ..metrics import CONTENT_TYPE
from .base import BaseHandler


class MetricsHandler(BaseHandler):
    access = Access.METRICS  # --open-metrics opens it
    produces = (CONTENT_TYPE.partition(";")[0],)

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.ctx.metrics.exposition())


class DatabaseMetricsHandler(BaseHandler):
    async def get(self) -> None:
        ctx = self.ctx
        self.write_json(await ctx.metrics.database_report.get(lambda: ctx.store.database_report(ctx.models)))
