"""``GET /_health``: liveness, or with ``quick=false`` readiness against CouchDB."""

from __future__ import annotations

import time

from .. import design
from ..couchdb import CouchDBError, NotFound
from ..problems import Problem
from .base import BaseHandler

RECENT_SECONDS = 60.0  # a write stored below quorum this recently makes readiness "degraded"


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
        cluster, degraded = await self.cluster()
        body = {
            "status": "degraded" if degraded else "ok",
            "couchdb": {"kind": server.kind, "version": server.version},
            "database": {"name": db.name, "doc_count": info.get("doc_count"), "cluster": info.get("cluster")},
            "cluster": cluster,
            "design_docs": {"current": current},
            "keys": "loaded",  # startup fails without usable keysets
        }
        if degraded:
            body["degraded"] = degraded
        self.write_json(body)

    async def cluster(self) -> tuple[dict, list[str]]:
        """Cluster membership (server admins only) and recent writes below quorum:
        reads and writes still work while degraded, so readiness stays 200."""
        degraded = []
        try:
            membership = await self.ctx.couch.membership()
        except CouchDBError:  # not an admin (or no such endpoint): the 202s still tell
            cluster: dict = {"nodes": "unavailable"}
        else:
            nodes, connected = set(membership["cluster_nodes"]), set(membership["all_nodes"])
            cluster = {"nodes": len(nodes), "connected": len(nodes & connected)}
            if nodes - connected:
                degraded.append(f"{len(nodes - connected)} of {len(nodes)} CouchDB nodes not connected")
        stats = self.ctx.store.stats
        if stats.last_below_quorum and time.monotonic() - stats.last_below_quorum < RECENT_SECONDS:
            degraded.append(f"writes stored below the write quorum in the last {RECENT_SECONDS:.0f} s")
        return cluster, degraded

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
