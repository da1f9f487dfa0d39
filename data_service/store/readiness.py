"""Readiness (``GET /_health?quick=false``): CouchDB answers, the database exists,
the generated design documents are installed and current, the cluster is whole."""

from __future__ import annotations

import time
from typing import Any

from .. import design
from ..couchdb import CouchDBError, Database, NotFound
from ..errors import ServiceError
from ..models import Models
from ..problems import Code
from ..vocabulary import JSONObject
from .results import Stats

RECENT_SECONDS = 60.0  # a write stored below quorum that no race explains this recently: readiness "degraded"


class DatabaseMissing(ServiceError):
    code = Code.DATABASE_MISSING

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    @property
    def detail(self) -> str:
        return f"database {self.name!r} does not exist"


class NotInstalled(ServiceError):
    code = Code.NOT_INSTALLED

    def __init__(self, diff: design.DesignDiff) -> None:
        super().__init__()
        self.diff = diff

    @property
    def detail(self) -> str:
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (("missing", self.diff.missing), ("outdated", self.diff.outdated + self.diff.foreign))
            if names
        ]
        return f"design documents not installed ({'; '.join(parts)}); run data-service install"

    def extensions(self) -> dict[str, Any]:
        return {
            "missing_design_docs": self.diff.missing,
            "outdated_design_docs": self.diff.outdated + self.diff.foreign,
        }


async def readiness(db: Database, models: Models, stats: Stats) -> JSONObject:
    """The readiness report; DatabaseMissing / NotInstalled / CouchDB errors otherwise.
    Reads and writes still work while ``degraded``, so that stays a report, not an error."""
    try:
        info = await db.info()
    except NotFound:
        raise DatabaseMissing(db.name) from None
    server = await db.couch.server_info()
    wanted = design.design_docs(models)
    diff = design.diff(await db.design_docs(wanted), wanted)
    if not diff.installed:
        raise NotInstalled(diff)
    cluster, degraded = await _cluster(db, stats)
    report: dict[str, Any] = {
        "status": "degraded" if degraded else "ok",
        "couchdb": {"kind": server.kind, "version": server.version},
        "database": {"name": db.name, "doc_count": info.get("doc_count"), "cluster": info.get("cluster")},
        "cluster": cluster,
        "design_docs": {"current": len(diff.current)},
        "keys": "loaded",  # startup fails without usable keysets
    }
    if degraded:
        report["degraded"] = degraded
    return report


async def _cluster(db: Database, stats: Stats) -> tuple[JSONObject, list[str]]:
    """Cluster membership (server admins only) and recent writes a copy did not store
    (a race between writers is ordinary contention, not a degraded cluster)."""
    degraded = []
    try:
        membership = await db.couch.membership()
    except CouchDBError:  # not an admin (or no such endpoint): the 202s still tell
        cluster: JSONObject = {"nodes": "unavailable"}
    else:
        nodes, connected = set(membership["cluster_nodes"]), set(membership["all_nodes"])
        cluster = {"nodes": len(nodes), "connected": len(nodes & connected)}
        if nodes - connected:
            degraded.append(f"{len(nodes - connected)} of {len(nodes)} CouchDB nodes not connected")
    if stats.last_copy_missing and time.monotonic() - stats.last_copy_missing < RECENT_SECONDS:
        degraded.append(f"writes not stored on every copy (a copy unreachable) in the last {RECENT_SECONDS:.0f} s")
    return cluster, degraded
