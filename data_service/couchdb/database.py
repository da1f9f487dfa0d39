"""One CouchDB database: documents, views, keyset paging, changes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import orjson

from .answers import Saved, ViewResult, WriteResult, saved_of, write_result
from .changes import ask_changes
from .errors import NotFound, PreconditionFailed, Unreadable
from .info import ServerInfo
from .transport import AsyncTransport, Response, path

_UNKNOWN: Any = object()


class Server(Protocol):
    """The server a database lives on: what it asks of ``client.CouchDB`` (a protocol,
    so the client can make databases without the two modules importing each other)."""

    transport: AsyncTransport

    async def request(
        self,
        method: str,
        target: str,
        *,
        params: dict[str, Any] | None = ...,
        json: Any = ...,
        idempotent: bool | None = ...,
        timeout: float | None = ...,
        long_poll: bool = ...,
    ) -> Response: ...

    async def json(self, method: str, target: str, **kwargs: Any) -> Any: ...

    async def server_info(self, refresh: bool = ...) -> ServerInfo: ...

    async def membership(self) -> dict: ...

    async def uuids(self, count: int = ...) -> list[str]: ...

    async def config_get(self, section: str, key: str | None = ...) -> Any: ...

    async def config_put(self, section: str, key: str, value: str) -> str: ...

    def database(self, name: str) -> Database: ...

    async def aclose(self) -> None: ...


class Database:
    """One database on a ``CouchDB`` server."""

    def __init__(self, couch: Server, name: str) -> None:
        self.couch = couch
        self.name = name
        self._copies: Any = _UNKNOWN

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
        deleted_conflicts: bool = False,
        revs: bool = False,
    ) -> dict:
        params = {
            "rev": rev,
            "conflicts": conflicts or None,
            "deleted_conflicts": deleted_conflicts or None,
            "revs": revs or None,
        }
        return await self.couch.json("GET", self._doc_path(docid), params=params)

    async def revision(self, docid: str) -> tuple[str, bool] | None:
        """(winning rev, deleted) of ``docid``; None if it never existed. (``GET`` cannot
        tell a deleted document from a missing one on every server; ``_all_docs`` can.)"""
        [row] = (await self.all_docs(keys=[docid])).rows
        value = row.get("value")
        if not isinstance(value, dict):
            return None
        return value["rev"], bool(value.get("deleted"))

    async def open_revs(
        self, docid: str, revs: Iterable[str] | None = None, *, r: int | None = None, history: bool = False
    ) -> list[dict]:
        """Leaf revisions (all, or the given ones) with their bodies, deleted ones too:
        ``[{"ok": doc} | {"missing": rev}]``. ``r``: how many copies must answer (on a
        cluster; ``copies()`` for all of them); ``history``: each with ``_revisions``."""
        which = "all" if revs is None else orjson.dumps(list(revs)).decode()
        params = {"open_revs": which, "r": r, "revs": history or None}
        return await self.couch.json("GET", self._doc_path(docid), params=params)

    async def copies(self) -> int | None:
        """How many copies of each document the database keeps (``cluster.n``; None on a
        server without clustering). Asked once: it is fixed when the database is created."""
        if self._copies is _UNKNOWN:
            self._copies = ((await self.info()).get("cluster") or {}).get("n")
        return self._copies

    async def put(self, doc: dict) -> WriteResult:
        """Create or update ``doc`` (``_id`` required; ``_rev`` to update). For design
        documents and tests: the service writes documents with ``save``."""
        return write_result(await self.couch.request("PUT", self._doc_path(doc["_id"]), json=doc))

    async def delete(self, docid: str, rev: str) -> WriteResult:
        return write_result(await self.couch.request("DELETE", self._doc_path(docid), params={"rev": rev}))

    async def every_copy(self) -> dict[str, int] | None:
        """A write's parameters asking every copy to store it (``w`` = the database's ``n``
        on a cluster; None where there is one copy)."""
        copies = await self.copies()
        return {"w": copies} if copies and copies > 1 else None

    async def save(self, docs: list[dict]) -> list[Saved]:
        """Write ``docs`` (``new_edits``) asking every copy to store them (``w`` = the
        database's ``n`` on a cluster): a document stored on fewer copies comes back
        ``accepted``. Sent again when an attempt got no answer (``retried``: a conflict may
        then be this very write, stored by the lost attempt)."""
        response = await self.couch.request(
            "POST", self._path("_bulk_docs"), params=await self.every_copy(), json={"docs": docs}, idempotent=True
        )
        try:
            results = response.json()
        except orjson.JSONDecodeError:
            raise Unreadable("POST", self._path("_bulk_docs"), response.status, "unreadable", "not JSON") from None
        return saved_of(docs, results, response)

    async def bulk_docs(self, docs: list[dict], *, new_edits: bool = True) -> list[dict]:
        """Per-document results; with ``new_edits=False`` the revs are stored as given
        (replication style — the way to create real conflicts)."""
        body: dict[str, Any] = {"docs": docs}
        if not new_edits:
            body["new_edits"] = False
        return await self.couch.json("POST", self._path("_bulk_docs"), json=body, idempotent=not new_edits)

    async def bulk_get(self, items: list[dict], *, revs: bool = False, r: int | None = None) -> list[dict]:
        """``items`` are ``{"id": .., "rev": ..?}``; returns CouchDB's ``results``. On
        CouchDB an item without ``rev`` comes with every leaf, deleted ones too (the dev
        server gives the winner only)."""
        body = await self.couch.json(
            "POST",
            self._path("_bulk_get"),
            params={"revs": revs or None, "r": r},
            json={"docs": items},
            idempotent=True,
        )
        return body["results"]

    async def design_docs(self, names: Iterable[str] = ()) -> dict[str, dict]:
        """Every design document, by name (without ``_design/``), plus ``names`` if they exist.
        A range read of ``_all_docs`` is served by one copy per shard range, which on a cluster
        may not yet hold a write acknowledged a moment ago; reading by ``keys`` is a quorum
        read per document, so the range only lists candidates."""
        listed = (await self.all_docs(startkey="_design/", endkey="_design0")).rows
        ids = sorted({row["id"] for row in listed} | {f"_design/{name}" for name in names})
        rows = (await self.all_docs(keys=ids, include_docs=True)).rows if ids else []
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
        if (
            options.get("startkey_docid") is not None
            and keys is None
            and not (await self.couch.server_info()).supports_startkey_docid
        ):
            return await self._rows_from_docid(target, options)
        return await self._rows(target, keys, options)

    async def update_index(self, ddoc: str, view: str, timeout: float | None = None) -> None:
        """Bring the index of ``_design/<ddoc>`` up to date, reading no row (a query with
        ``limit=0``: CouchDB indexes on query, and answers once the index is current)."""
        await self.couch.request(
            "GET", self._path("_design", ddoc, "_view", view), params={"limit": 0}, timeout=timeout
        )

    async def page(
        self, ddoc: str | None, view: str | None, *, after: tuple[Any, str] | None, limit: int, **options: Any
    ) -> tuple[list[dict], bool]:
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

    async def pages(
        self, ddoc: str | None, view: str | None, *, size: int, **options: Any
    ) -> AsyncIterator[list[dict]]:
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
        """Rows of a view or ``_all_docs``. With ``include_docs``, an answer that cannot be
        parsed (a document in it nested too deeply) is read again without the documents,
        which are then fetched one by one (``_docs_one_by_one``): one document never
        hides the others."""
        try:
            body = await self._rows_body(target, keys, options)
        except Unreadable:
            if not options.get("include_docs"):
                raise
            body = await self._rows_body(target, keys, {**options, "include_docs": None, "conflicts": None})
            await self._docs_one_by_one(body["rows"], conflicts=bool(options.get("conflicts")))
        return ViewResult(body["rows"], body.get("total_rows"), body.get("offset"))

    async def _rows_body(self, target: str, keys: list | None, options: dict) -> dict:
        if keys is None:
            return await self.couch.json("GET", target, params=options)
        return await self.couch.json("POST", target, params=options, json={"keys": keys}, idempotent=True)

    async def _docs_one_by_one(self, rows: list[dict], conflicts: bool = False) -> None:
        """Each row's (or change's) document, fetched alone; one that cannot be parsed
        either comes as ``"doc": None, "unreadable": True``."""
        for row in rows:
            if row.get("id") is None or row.get("deleted") or (row.get("value") or {}).get("deleted"):
                continue  # a key without a document, or a deletion
            try:
                row["doc"] = await self.get(row["id"], conflicts=conflicts)
            except NotFound:  # deleted meanwhile
                row["doc"] = None
            except Unreadable:
                row["doc"], row["unreadable"] = None, True

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
            kept += [
                row
                for row in batch.rows
                if not (row["key"] == start and (row["id"] > docid if descending else row["id"] < docid))
            ]
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
        doc_ids: list[str] | None = None,
        deadline: float | None = None,
    ) -> dict:
        """One ``_changes`` response. Seqs are opaque: pass back what you got. With
        ``deadline`` (seconds), an answer that has not come by then (retries included)
        raises Timeout, a long poll's too; without, a ``longpoll`` whose answer has not
        come ``timeout`` + 2 s after it was asked for is taken as no results, ``last_seq``
        unchanged (some servers ignore ``timeout``). With ``include_docs``, documents this
        client cannot parse come as ``_rows`` gives them."""
        ask = (self.couch.json, self._path("_changes"), since, feed, timeout, limit, deadline)
        try:
            return await ask_changes(*ask, include_docs, style, doc_ids)
        except Unreadable:
            if not include_docs:
                raise
            answer = await ask_changes(*ask, False, style, doc_ids)
            await self._docs_one_by_one(answer.get("results", []))
            return answer
