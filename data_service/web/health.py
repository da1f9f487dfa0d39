"""``GET /_health``: liveness, or with ``quick=false`` readiness against CouchDB."""

from __future__ import annotations

from .base import BaseHandler


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        if self.get_query_argument("quick", "true").lower() != "false":
            self.write_json({"status": "ok"})
            return
        # a missing database, design docs or CouchDB: their problems, from write_error
        self.write_json(await self.ctx.store.readiness(self.ctx.models))
