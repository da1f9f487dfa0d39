"""``GET /_health``: liveness, or with ``quick=false`` readiness against CouchDB."""

from __future__ import annotations

from .. import design
from ..couchdb import NotFound
from ..problems import Problem
from .base import BaseHandler


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        if self.get_query_argument("quick", "true").lower() != "false":
            self.write_json({"status": "ok"})
            return
        db = self.ctx.db
        try:  # other CouchDB failures become their problems in BaseHandler.write_error
            info = await db.info()
        except NotFound:
            raise Problem("database_missing", f"database {db.name!r} does not exist") from None
        server = await self.ctx.couch.server_info()
        current = self.check_design_docs(await db.design_docs())
        self.write_json({
            "status": "ok",
            "couchdb": {"kind": server.kind, "version": server.version},
            "database": {"name": db.name, "doc_count": info.get("doc_count")},
            "design_docs": {"current": current},
            "keys": "loaded",  # startup fails without usable keysets
        })

    def check_design_docs(self, installed: dict[str, dict]) -> int:
        """How many design docs are current; 503 naming those missing or outdated."""
        wanted_docs = design.design_docs(self.ctx.models)
        missing, outdated = [], []
        for name, wanted in wanted_docs.items():
            if name not in installed:
                missing.append(name)
            elif design.content_hash(installed[name]) != design.content_hash(wanted):
                outdated.append(name)
        if missing or outdated:
            parts = [f"{label}: {', '.join(names)}" for label, names
                     in (("missing", missing), ("outdated", outdated)) if names]
            raise Problem("not_installed",
                          f"design documents not installed ({'; '.join(parts)}); run data-service install",
                          missing_design_docs=missing, outdated_design_docs=outdated)
        return len(wanted_docs)
