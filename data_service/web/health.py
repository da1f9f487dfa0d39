"""``GET /_health``: liveness, or with ``quick=false`` readiness against CouchDB."""

from __future__ import annotations

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
        except NotFound:
            raise Problem("database_missing", f"database {db.name!r} does not exist") from None
        except CouchDBError as exc:
            raise from_couchdb(exc) from None
        self.write_json({
            "status": "ok",
            "couchdb": {"kind": server.kind, "version": server.version},
            "database": {"name": db.name, "doc_count": info.get("doc_count")},
        })
