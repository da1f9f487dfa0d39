"""``GET /_health``: liveness, or with ``quick=false`` readiness against CouchDB.
Both say what is running (``build``); readiness fails at once while draining. With
``--workers`` liveness speaks for the whole sidecar: it fails while any worker has not
published its heartbeat for ``worker_metrics.STALE_AFTER`` seconds (stuck or dying), so
whichever worker a probe reaches, a stuck one gets the container restarted."""

from __future__ import annotations

from ..callers import Access
from ..problems import Code
from .base import BaseHandler
from .problem import Problem


class HealthHandler(BaseHandler):
    def access_for(self) -> Access:
        """Liveness needs no token; anything else asked of /_health is readiness."""
        quick = self.request.query_arguments.get("quick")
        return Access.LIVENESS if quick is None or quick == [b"true"] else Access.READINESS

    async def get(self) -> None:
        build, worker = self.ctx.build.as_dict(), self.ctx.store.worker
        quick = self.get_query_argument("quick", "true", strip=False)
        if quick not in ("true", "false"):
            raise Problem(Code.BAD_REQUEST, "quick: true or false")
        if quick == "true":
            workers = self.ctx.metrics.workers
            if workers is not None and (stalled := workers.stalled()):
                raise Problem(Code.WORKER_STALLED, f"workers {stalled} have not answered for a while", stalled=stalled)
            self.write_json({"status": "ok", "build": build, "worker": worker})
            return
        if self.ctx.inflight.draining:  # a load balancer must stop sending here
            raise Problem(Code.DRAINING, "the service received SIGTERM and finishes the requests it has")
        # a missing database, design docs or CouchDB: their problems, from write_error
        self.write_json({**await self.ctx.store.readiness(self.ctx.models), "build": build, "worker": worker})
