"""Async CouchDB 3.x client: servers, databases, documents, views, changes.

Written to the CouchDB 3.x API. Where the dev server (pouchdb-server) lacks a
feature the client says so with ``Unsupported`` instead of guessing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import orjson

from ..retry import RetryPolicy
from .errors import CouchDBError, NotFound, PreconditionFailed, Timeout, Unavailable, Unsupported, error_for_status
from .transport import TLS, AiohttpTransport, AsyncTransport, Limits, Request, Response, Timeouts

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({502, 503, 504})
_MISSING: Any = object()


def path(*segments: str) -> str:
    """``/seg/seg`` with every segment percent-encoded (ids may hold ``/``)."""
    return "/" + "/".join(quote(s, safe="") for s in segments)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``http://u:p@host/`` → (``http://host``, (u, p)); the URL kept has no secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if parts.username is None:
        return clean, None
    return clean, (unquote(parts.username), unquote(parts.password or ""))


_JSON_PARAMS = frozenset({"key", "startkey", "endkey", "start_key", "end_key"})


def encode_params(options: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Query parameters the CouchDB way: keys as JSON, booleans as true/false."""
    pairs = []
    for name, value in options.items():
        if value is None:
            continue
        if name in _JSON_PARAMS:
            text = orjson.dumps(value).decode()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        pairs.append((name, text))
    return tuple(pairs)


@dataclass(frozen=True)
class ServerInfo:
    """``GET /`` and what it tells about the server's kind and abilities."""

    raw: dict

    @property
    def kind(self) -> str:
        if "couchdb" in self.raw:
            return "couchdb"
        if "express-pouchdb" in self.raw:
            return "pouchdb-server"
        return "unknown"

    @property
    def version(self) -> str | None:
        return self.raw.get("version")

    @property
    def supports_node_config(self) -> bool:
        return self.kind == "couchdb"

    @property
    def supports_startkey_docid(self) -> bool:
        """pouchdb-server ignores ``startkey_docid`` in view queries."""
        return self.kind != "pouchdb-server"


@dataclass(frozen=True)
class WriteResult:
    id: str
    rev: str
    accepted: bool = False  # 202: stored, but the write quorum was not met


@dataclass(frozen=True)
class ViewResult:
    rows: list[dict]
    total_rows: int | None = None
    offset: int | None = None


class CouchDB:
    """A CouchDB server. Use ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        transport: AsyncTransport | None = None,
        timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(),
        tls: TLS = TLS(),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        observer: Callable[[str, str, int | None, float], None] | None = None,
    ) -> None:
        """``observer(method, path, status, seconds)`` is called after every attempt
        (status None when no response came) — the metrics hook."""
        self.url, url_auth = split_credentials(url)
        self.transport = transport or AiohttpTransport(
            self.url, auth=auth or url_auth, timeouts=timeouts, limits=limits, tls=tls
        )
        self.retry = retry
        self._sleep = sleep
        self.observer = observer
        self._info: ServerInfo | None = None

    async def __aenter__(self) -> "CouchDB":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def request(
        self,
        method: str,
        target: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = _MISSING,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send with retries; return a 2xx/304 ``Response`` or raise a typed error.

        Idempotent requests (GET/HEAD/PUT/DELETE, or ``idempotent=True``) are retried
        on connection failures, timeouts and 502/503/504, per ``self.retry``.
        A retried PUT whose first attempt did land answers 409: callers creating
        documents must treat that conflict as "maybe mine".
        """
        body = None if json is _MISSING else orjson.dumps(json)
        request = Request(method, target, encode_params(params or {}), body, timeout=timeout)
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        attempts = self.retry.attempts if idempotent else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            started = time.perf_counter()
            try:
                response = await self.transport.handle(request)
            except Unavailable:
                self._observe(request, None, started)
                if last:
                    raise
            else:
                self._observe(request, response.status, started)
                if response.status < 400:
                    return response
                if last or response.status not in RETRY_STATUSES:
                    raise _error(request, response)
            await self._sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    def _observe(self, request: Request, status: int | None, started: float) -> None:
        if self.observer is not None:
            self.observer(request.method, request.path, status, time.perf_counter() - started)

    async def json(self, method: str, target: str, **kwargs) -> Any:
        return (await self.request(method, target, **kwargs)).json()

    # -- server ---------------------------------------------------------------

    async def server_info(self, refresh: bool = False) -> ServerInfo:
        if self._info is None or refresh:
            self._info = ServerInfo(await self.json("GET", "/"))
        return self._info

    async def uuids(self, count: int = 1) -> list[str]:
        return (await self.json("GET", "/_uuids", params={"count": count}))["uuids"]

    async def membership(self) -> dict:
        """``GET /_membership``: ``cluster_nodes`` (configured) and ``all_nodes`` (connected).
        Server admins only on CouchDB 3 (``Unauthorized`` otherwise)."""
        return await self.json("GET", "/_membership")

    async def _node_config(self, method: str, section: str, key: str | None, **kwargs) -> Any:
        info = await self.server_info()
        target = path("_node", "_local", "_config", section, *([key] if key else []))
        if not info.supports_node_config:
            raise Unsupported(method, target, reason=f"{info.kind} has no node config")
        return await self.json(method, target, **kwargs)

    async def config_get(self, section: str, key: str | None = None) -> Any:
        """A node config section (dict) or value (str); ``NotFound`` if unset."""
        return await self._node_config("GET", section, key)

    async def config_put(self, section: str, key: str, value: str) -> str:
        """Set a node config value; returns the previous value."""
        return await self._node_config("PUT", section, key, json=value)

    def database(self, name: str) -> "Database":
        return Database(self, name)


class Database:
    """One database on a ``CouchDB`` server."""

    def __init__(self, couch: CouchDB, name: str) -> None:
        self.couch = couch
        self.name = name

    def _path(self, *segments: str) -> str:
        return path(self.name, *segments)

    def _doc_path(self, docid: str) -> str:
        """``_design/x`` and ``_local/x`` keep their slash; any other id is one segment."""
        prefix, slash, rest = docid.partition("/")
        if slash and prefix in ("_design", "_local"):
            return self._path(prefix, rest)
        return self._path(docid)

    # -- the database ---------------------------------------------------------

    async def create(self, exist_ok: bool = False) -> bool:
        """Create it; ``False`` if it existed and ``exist_ok``."""
        try:
            await self.couch.request("PUT", self._path())
        except PreconditionFailed:
            if not exist_ok:
                raise
            return False
        return True

    async def drop(self, missing_ok: bool = False) -> None:
        try:
            await self.couch.request("DELETE", self._path())
        except NotFound:
            if not missing_ok:
                raise

    async def info(self) -> dict:
        return await self.couch.json("GET", self._path())

    async def exists(self) -> bool:
        try:
            await self.couch.request("HEAD", self._path())
        except NotFound:
            return False
        return True

    async def security(self) -> dict:
        return await self.couch.json("GET", self._path("_security"))

    async def put_security(self, security: dict) -> None:
        await self.couch.request("PUT", self._path("_security"), json=security)

    # -- documents ------------------------------------------------------------

    async def get(
        self,
        docid: str,
        *,
        rev: str | None = None,
        conflicts: bool = False,
        revs: bool = False,
    ) -> dict:
        params = {"rev": rev, "conflicts": conflicts or None, "revs": revs or None}
        return await self.couch.json("GET", self._doc_path(docid), params=params)

    async def revision(self, docid: str) -> tuple[str, bool] | None:
        """(winning rev, deleted) of ``docid``; None if it never existed. (``GET`` cannot
        tell a deleted document from a missing one on every server; ``_all_docs`` can.)"""
        [row] = (await self.all_docs(keys=[docid])).rows
        value = row.get("value")
        if not isinstance(value, dict):
            return None
        return value["rev"], bool(value.get("deleted"))

    async def open_revs(self, docid: str, revs: Iterable[str] | None = None) -> list[dict]:
        """Leaf revisions (all, or the given ones): ``[{"ok": doc} | {"missing": rev}]``."""
        which = "all" if revs is None else orjson.dumps(list(revs)).decode()
        return await self.couch.json("GET", self._doc_path(docid), params={"open_revs": which})

    async def put(self, doc: dict) -> WriteResult:
        """Create or update ``doc`` (``_id`` required; ``_rev`` to update)."""
        response = await self.couch.request("PUT", self._doc_path(doc["_id"]), json=doc)
        return _write_result(response)

    async def delete(self, docid: str, rev: str) -> WriteResult:
        response = await self.couch.request("DELETE", self._doc_path(docid), params={"rev": rev})
        return _write_result(response)

    async def bulk_docs(self, docs: list[dict], *, new_edits: bool = True) -> list[dict]:
        """Per-document results; with ``new_edits=False`` the revs are stored as given
        (replication style — the way to create real conflicts)."""
        body: dict[str, Any] = {"docs": docs}
        if not new_edits:
            body["new_edits"] = False
        return await self.couch.json(
            "POST", self._path("_bulk_docs"), json=body, idempotent=not new_edits
        )

    async def bulk_get(self, items: list[dict], *, revs: bool = False) -> list[dict]:
        """``items`` are ``{"id": .., "rev": ..?}``; returns CouchDB's ``results``."""
        body = await self.couch.json(
            "POST", self._path("_bulk_get"), params={"revs": revs or None},
            json={"docs": items}, idempotent=True,
        )
        return body["results"]

    async def design_docs(self) -> dict[str, dict]:
        """Every design document, by name (without ``_design/``)."""
        rows = (await self.all_docs(startkey="_design/", endkey="_design0", include_docs=True)).rows
        return {row["id"].removeprefix("_design/"): row["doc"] for row in rows if row.get("doc")}

    async def design_info(self, name: str) -> Any:
        """``GET /db/_design/<name>/_info`` (a stub on the dev server)."""
        return await self.couch.json("GET", self._path("_design", name, "_info"))

    async def put_design(self, name: str, design: dict) -> WriteResult:
        """Create/replace ``_design/<name>`` (include ``_rev`` to replace)."""
        return await self.put({**design, "_id": f"_design/{name}"})

    # -- views and changes ----------------------------------------------------

    async def view(
        self,
        ddoc: str,
        view: str,
        *,
        keys: list | None = None,
        **options: Any,
    ) -> ViewResult:
        """Query ``_design/<ddoc>/_view/<view>``. Options as CouchDB names them:
        key, startkey, endkey, startkey_docid, endkey_docid, limit, descending,
        include_docs, inclusive_end, reduce, group, skip. ``keys`` goes in a POST body."""
        target = self._path("_design", ddoc, "_view", view)
        if options.get("startkey_docid") is not None and keys is None:
            if not (await self.couch.server_info()).supports_startkey_docid:
                return await self._rows_from_docid(target, options)
        return await self._rows(target, keys, options)

    async def page(self, ddoc: str | None, view: str | None, *, after: tuple[Any, str] | None, limit: int,
                   **options: Any) -> tuple[list[dict], bool]:
        """Up to ``limit`` rows of a view (``_all_docs`` when ``ddoc`` is None) strictly
        after ``after`` = (key, id) in the view's order, and whether the range ended.
        Keyset paging, never ``skip``: it asks for one row more, starting at ``after``
        (``startkey`` + ``startkey_docid``), and drops that row if it is still there."""
        want = limit + (after is not None)
        if after is not None:
            options["startkey"] = after[0]
            if ddoc is not None:  # _all_docs keys are ids: unique already
                options["startkey_docid"] = after[1]
        if ddoc is None:
            result = await self.all_docs(limit=want, **options)
        else:
            result = await self.view(ddoc, view or "", limit=want, **options)
        rows = result.rows
        ended = len(rows) < want
        if after is not None and rows and (rows[0]["key"], rows[0]["id"]) == tuple(after):
            rows = rows[1:]
        return rows[:limit], ended

    async def pages(self, ddoc: str | None, view: str | None, *, size: int, **options: Any) -> AsyncIterator[list[dict]]:
        """Every row of a view (or ``_all_docs``), ``size`` at a time (``page``)."""
        after = None
        while True:
            rows, ended = await self.page(ddoc, view, after=after, limit=size, **options)
            if rows:
                yield rows
            if ended or not rows:
                return
            after = (rows[-1]["key"], rows[-1]["id"])

    async def all_docs(self, *, keys: list | None = None, **options: Any) -> ViewResult:
        return await self._rows(self._path("_all_docs"), keys, options)

    async def _rows(self, target: str, keys: list | None, options: dict) -> ViewResult:
        if keys is None:
            body = await self.couch.json("GET", target, params=options)
        else:
            body = await self.couch.json(
                "POST", target, params=options, json={"keys": keys}, idempotent=True
            )
        return ViewResult(body["rows"], body.get("total_rows"), body.get("offset"))

    async def _rows_from_docid(self, target: str, options: dict) -> ViewResult:
        """Fallback for servers without ``startkey_docid``: drop the rows of ``startkey``
        whose id sorts before it, reading on (with ``skip``) until ``limit`` rows remain."""
        options = dict(options)
        docid = options.pop("startkey_docid")
        limit = options.pop("limit", None)
        start, descending = options.get("startkey"), options.get("descending", False)
        kept: list[dict] = []
        skip = 0
        while True:
            batch = await self._rows(target, None, {**options, "limit": limit, "skip": skip or None})
            kept += [row for row in batch.rows if not (
                row["key"] == start and (row["id"] > docid if descending else row["id"] < docid))]
            if limit is None or len(batch.rows) < limit or len(kept) >= limit:
                return ViewResult(kept[:limit], batch.total_rows, batch.offset)
            skip += len(batch.rows)

    async def changes(
        self,
        *,
        since: str | int | None = None,
        feed: str = "normal",
        timeout: float = 30.0,
        limit: int | None = None,
        include_docs: bool = False,
        style: str | None = None,
    ) -> dict:
        """One ``_changes`` response. For ``longpoll`` we also enforce ``timeout``
        ourselves (some servers ignore it): on expiry the answer is no results,
        ``last_seq`` unchanged. Seqs are opaque: pass back what you got."""
        params = {
            "since": since,
            "feed": feed,
            "limit": limit,
            "include_docs": include_docs or None,
            "style": style,
        }
        if feed == "longpoll":
            params["timeout"] = int(timeout * 1000)
        try:
            return await self.couch.json(  # a longpoll timing out is an answer, not a failure to retry
                "GET", self._path("_changes"), params=params, timeout=timeout + 2.0,
                idempotent=feed != "longpoll",
            )
        except Timeout:
            if feed != "longpoll":
                raise
            return {"results": [], "last_seq": since, "pending": None}


def _error(request: Request, response: Response) -> CouchDBError:
    error = reason = None
    try:
        body = response.json()
        if isinstance(body, dict):
            error, reason = body.get("error"), body.get("reason")
    except orjson.JSONDecodeError:
        pass
    cls = error_for_status(response.status)
    return cls(request.method, request.path, response.status, error, reason)


def _write_result(response: Response) -> WriteResult:
    body = response.json()
    return WriteResult(body["id"], body["rev"], accepted=response.status == 202)
