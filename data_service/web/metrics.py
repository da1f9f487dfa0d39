"""``GET /_metrics`` (Prometheus text) and ``GET /_metrics/database`` (JSON, cached)."""

from __future__ import annotations

from ..couchdb import NotFound
from ..metrics import CONTENT_TYPE, database_report
from ..problems import Problem
from .base import BaseHandler


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.ctx.metrics.exposition())


class DatabaseMetricsHandler(BaseHandler):
    async def get(self) -> None:
        ctx = self.ctx
        try:
            report = await ctx.metrics.database_report.get(lambda: database_report(ctx.couch, ctx.db, ctx.models))
        except NotFound:
            raise Problem("database_missing", f"database {ctx.db.name!r} does not exist") from None
        self.write_json(report)
