"""``GET /_health``: liveness, or with ``quick=false`` readiness against CouchDB."""

from __future__ import annotations

from .. import design
from ..couchdb import CouchDBError, NotFound
from ..problems import Problem, from_couchdb
from .base import BaseHandler


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        if self.get_query_argument("quick", "true").lower() != "false":
            self.write_json({"status": "ok"})
            return
        db = self.ctx.db
        try:
            info = await db.info()
            server = await self.ctx.couch.server_info()
            installed = await db.all_docs(startkey="_design/", endkey="_design0", include_docs=True)
        except NotFound:
            raise Problem("database_missing", f"database {db.name!r} does not exist") from None
        except CouchDBError as exc:
            raise from_couchdb(exc) from None
        current = self.check_design_docs(installed.rows)
        if self.ctx.store.protector is None:
            raise Problem("internal_error", "no keys are loaded")
        self.write_json({
            "status": "ok",
            "couchdb": {"kind": server.kind, "version": server.version},
            "database": {"name": db.name, "doc_count": info.get("doc_count")},
            "design_docs": {"current": current},
            "keys": "loaded",
        })

    def check_design_docs(self, rows: list[dict]) -> int:
        """How many design docs are current; 503 naming those missing or outdated."""
        installed = {row["id"].removeprefix("_design/"): row.get("doc") or {} for row in rows}
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
