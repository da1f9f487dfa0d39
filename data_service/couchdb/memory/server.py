"""An Apache CouchDB 3.5 single node in memory: the server's endpoints and the routing
of a request to a database's.

Not emulated (answered 501 ``not_implemented``): views and everything else under
``_design/<name>/`` but the document itself, Mango (``_find``, ``_index``), attachments,
``feed=continuous``, ``_changes`` filters other than ``_doc_ids`` and ``_design``,
replication, compaction, sessions and stats. There are no users: every request is an
admin's, ``_security`` is stored but not enforced, ``validate_doc_update`` never runs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from ..transport import Request, Response
from .database import MemoryDatabase
from .edits import DESIGN, LOCAL
from .endpoints import Endpoints, allow, answer, body_of
from .http import HttpError, Params, bad_request, no_database, not_implemented

VERSION = "3.5.2"
NODE = "memory@127.0.0.1"
SYSTEM_DATABASES = ("_replicator", "_users")
_DB_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
MAX_UUIDS = 1000


class Uuids:
    """``_uuids`` as CouchDB makes them: ``sequential`` (its default: 26 hex characters
    shared by a run of ids, then a 6-digit counter that grows by a random step) or
    ``random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._prefix, self._counter = self._new_prefix(), 0

    def _new_prefix(self) -> str:
        return f"{self.rng.getrandbits(104):026x}"

    def take(self, algorithm: str) -> str:
        if algorithm == "random":
            return f"{self.rng.getrandbits(128):032x}"
        self._counter += self.rng.randint(1, 0xFFE)
        if self._counter >= 0xFFF000:
            self._prefix, self._counter = self._new_prefix(), self.rng.randint(1, 0xFFE)
        return f"{self._prefix}{self._counter:06x}"


class MemoryServer:
    """Databases and the server's own endpoints. One server may stand behind several
    transports (several clients, each with its own faults); ``seed`` makes its ids repeatable."""

    def __init__(self, *, seed: int | None = None) -> None:
        rng = random.Random(seed)
        self.uuid = f"{rng.getrandbits(128):032x}"
        self.uuids = Uuids(rng)
        self.config: dict[str, dict[str, str]] = {"uuids": {}}
        self.databases: dict[str, MemoryDatabase] = {name: MemoryDatabase(name, 1) for name in SYSTEM_DATABASES}

    def new_id(self) -> str:
        return self.uuids.take(self.config.get("uuids", {}).get("algorithm", "sequential"))

    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except HttpError as exc:
            head = request.method == "HEAD"
            return answer(exc.status, {"error": exc.error, "reason": exc.reason}, head=head)

    async def _route(self, request: Request) -> Response:
        segments = [unquote(part) for part in request.path.split("/")[1:]]
        while segments and not segments[-1]:
            segments.pop()
        if not segments:
            allow(request, "GET,HEAD")
            return answer(200, self._welcome(), head=request.method == "HEAD")
        first, rest = segments[0], segments[1:]
        if first.startswith("_") and first not in SYSTEM_DATABASES:
            return self._server_endpoint(request, first, rest)
        if not rest:
            return self._database(request, first)
        db = self.databases.get(first)
        if db is None:
            raise no_database()
        return await self._in_database(request, Endpoints(db, self.new_id), rest)

    def _welcome(self) -> dict:
        return {
            "couchdb": "Welcome",
            "version": VERSION,
            "git_sha": "memory",
            "uuid": self.uuid,
            "features": ["access-ready", "partitioned", "pluggable-storage-engines", "reshard", "scheduler"],
            "vendor": {"name": "data-service in-memory CouchDB"},
        }

    # -- the server -------------------------------------------------------------

    def _server_endpoint(self, request: Request, name: str, rest: list[str]) -> Response:
        if name == "_up" and not rest:
            allow(request, "GET,HEAD")
            return answer(200, {"seeds": {}, "status": "ok"})
        if name == "_uuids" and not rest:
            allow(request, "GET")
            return answer(200, {"uuids": [self.new_id() for _ in range(_uuid_count(Params(request.params)))]})
        if name == "_all_dbs" and not rest:
            allow(request, "GET,HEAD")
            return answer(200, sorted(self.databases))
        if name == "_membership" and not rest:
            allow(request, "GET")
            return answer(200, {"all_nodes": [NODE], "cluster_nodes": [NODE]})
        if name == "_node" and len(rest) >= 2 and rest[0] in ("_local", NODE) and rest[1] == "_config":
            return self._config(request, rest[2:])
        raise not_implemented(f"/{name}")

    def _config(self, request: Request, keys: list[str]) -> Response:
        """``/_node/_local/_config[/section[/key]]``: read, set (the old value back) or delete."""
        if not keys:
            allow(request, "GET")
            return answer(200, self.config)
        section = self.config.get(keys[0], {})
        if len(keys) == 1:
            allow(request, "GET")
            return answer(200, section)
        allow(request, "GET,PUT,DELETE")
        key = keys[1]
        old = section.get(key)
        if request.method == "GET" or (request.method == "DELETE" and old is None):
            if old is None:
                raise HttpError(404, "not_found", "unknown_config_value")
            return answer(200, old)
        if request.method == "DELETE":
            del section[key]
        else:
            value = body_of(request)
            if not isinstance(value, str):
                raise bad_request("Config values must be strings")
            self.config.setdefault(keys[0], section)[key] = value
        return answer(200, "" if old is None else old)

    # -- databases ------------------------------------------------------------------

    def _database(self, request: Request, name: str) -> Response:
        allow(request, "GET,HEAD,PUT,DELETE,POST")
        db = self.databases.get(name)
        if request.method == "PUT":
            if not _DB_NAME.match(name) and name not in SYSTEM_DATABASES:
                raise bad_request(
                    f"Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the characters"
                    " _, $, (, ), +, -, and / are allowed. Must begin with a letter.",
                    "illegal_database_name",
                )
            if db is not None:
                raise HttpError(412, "file_exists", "The database could not be created, the file already exists.")
            self.databases[name] = MemoryDatabase(name, Params(request.params).integer("q") or 2)
            return answer(201, {"ok": True})
        if db is None:
            raise no_database()
        if request.method == "DELETE":
            del self.databases[name]
            db.dropped()
            return answer(200, {"ok": True})
        if request.method == "POST":
            return Endpoints(db, self.new_id).create(request)
        return answer(200, db.info(), head=request.method == "HEAD")

    async def _in_database(self, request: Request, endpoints: Endpoints, rest: list[str]) -> Response:
        first = rest[0]
        if first in ("_design", "_local") and len(rest) >= 2:
            if len(rest) > 2:  # views, _info, shows, attachments...
                raise not_implemented("/".join(rest))
            return endpoints.document(request, f"{first}/{rest[1]}")
        if first.startswith((DESIGN, LOCAL)) or not first.startswith("_"):
            if len(rest) > 1:
                raise not_implemented("attachments")
            return endpoints.document(request, first)
        handler = _DATABASE_ENDPOINTS.get(first) if len(rest) == 1 else None
        if handler is None and first not in _NOT_EMULATED and len(rest) == 1:
            return endpoints.document(request, first)  # an illegal id: CouchDB's 400
        if handler is None:
            raise not_implemented(first)
        result = handler(endpoints, request)
        return await result if isinstance(result, Awaitable) else result


_DATABASE_ENDPOINTS: dict[str, Callable[[Endpoints, Request], Any]] = {
    "_all_docs": Endpoints.all_docs,
    "_bulk_docs": Endpoints.bulk_docs,
    "_bulk_get": Endpoints.bulk_get,
    "_changes": Endpoints.changes,
    "_purge": Endpoints.purge,
    "_security": Endpoints.security,
    "_revs_limit": Endpoints.revs_limit,
}


_NOT_EMULATED = frozenset(
    {
        *("_find", "_index", "_explain", "_design_docs", "_local_docs", "_compact", "_view_cleanup"),
        *("_ensure_full_commit", "_missing_revs", "_revs_diff", "_shards", "_partition", "_temp_view"),
    }
)


def _uuid_count(params: Params) -> int:
    try:
        count = params.integer("count", 1) or 0
    except HttpError:
        raise bad_request("count must be a positive integer") from None
    if count > MAX_UUIDS:
        raise bad_request("count parameter too large")
    return count
