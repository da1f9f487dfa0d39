"""The endpoints of one in-memory database: documents, ``_local`` documents, the bulk
endpoints, ``_all_docs``, ``_changes``, ``_purge``, ``_security``."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from ..transport import Request, Response
from .database import DEFAULT_SECURITY, MemoryDatabase, replicated_history
from .edits import LOCAL, Edit, parse_edit
from .http import HttpError, Params, bad_request, dumps, loads, missing, not_implemented
from .rawjson import read_bulk, read_document
from .reads import META, Feed, all_docs, bulk_get, open_revs, parse_keys, read_doc
from .revtree import parse_rev, rev_text

LONGPOLL_TIMEOUT = 60.0  # seconds, CouchDB's default


def answer(status: int, body: Any, headers: dict[str, str] | None = None, *, head: bool = False) -> Response:
    return Response(status, b"" if head else dumps(body), {"Content-Type": "application/json", **(headers or {})})


def allow(request: Request, methods: str) -> None:
    if request.method not in methods.split(","):
        raise HttpError(405, "method_not_allowed", f"Only {methods} allowed")


def body_of(request: Request, default: bytes = b"") -> Any:
    return loads(request.body or default)


class Endpoints:
    """Answers the requests for one database; ``new_id`` makes ids for documents without one."""

    def __init__(self, db: MemoryDatabase, new_id: Callable[[], str]) -> None:
        self.db, self.new_id = db, new_id

    # -- documents ----------------------------------------------------------

    def document(self, request: Request, docid: str) -> Response:
        allow(request, "GET,HEAD,PUT,DELETE")
        params = Params(request.params)
        if docid.startswith(LOCAL):
            return self._local(request, docid, params)
        if request.method in ("GET", "HEAD"):
            return self._read(request, docid, params)
        if request.method == "PUT":
            doc = read_document(request.body or b"")
            edit = parse_edit(doc, docid)
            edit.rev = _explicit_rev(request, params, doc.get("_rev"))
            if params.text("new_edits") == "false":
                return self._written(docid, rev_text(self.db.replicate(edit)), params, edit.deleted)
        else:  # DELETE: CouchDB opens the winner first (404 for a missing or deleted document)
            current = self.db.docs.get(docid)
            if current is None or current.deleted:
                raise missing("missing" if current is None else "deleted")
            edit = Edit(docid, _explicit_rev(request, params, None), None, {}, True)
        return self._written(docid, rev_text(self.db.update(edit)), params, edit.deleted)

    def _read(self, request: Request, docid: str, params: Params) -> Response:
        head = request.method == "HEAD"
        if "open_revs" in params:
            return answer(200, open_revs(self.db, docid, params), head=head)
        doc = read_doc(self.db, docid, params)
        if any(name in doc for name in META):
            return answer(200, doc, head=head)
        etag = f'"{doc["_rev"]}"'
        if _matches(_header(request, "If-None-Match"), etag):
            return Response(304, b"", {"ETag": etag})
        return answer(200, doc, {"ETag": etag}, head=head)

    def _written(self, docid: str, rev: str, params: Params, deleted: bool) -> Response:
        status = 202 if (params.integer("w") or 1) > 1 else 200 if deleted else 201
        return answer(status, {"ok": True, "id": docid, "rev": rev}, {"ETag": f'"{rev}"'})

    def create(self, request: Request) -> Response:
        """``POST /db``: a new document, its id given or made."""
        edit = self._edit_of(read_document(request.body or b""))
        return answer(201, {"ok": True, "id": edit.docid, "rev": rev_text(self.db.update(edit))})

    def _local(self, request: Request, docid: str, params: Params) -> Response:
        if request.method == "PUT":
            edit = parse_edit(read_document(request.body or b""), docid)
            return answer(200 if edit.deleted else 201, {"ok": True, "id": docid, "rev": self.db.put_local(edit)})
        if request.method == "DELETE":
            return answer(200, {"ok": True, "id": docid, "rev": self.db.delete_local(docid)})
        number, body = self.db.local.get(docid) or (None, {})
        rev = f"0-{number}"
        if number is None or params.text("rev", rev) != rev:
            raise missing()
        doc = {"_id": docid, "_rev": rev, **body}
        if params.flag("revs"):
            doc["_revisions"] = {"start": 0, "ids": [str(number)]}
        etag = '"' + hashlib.md5(dumps(doc), usedforsecurity=False).hexdigest() + '"'
        return answer(200, doc, {"ETag": etag}, head=request.method == "HEAD")

    # -- bulk -----------------------------------------------------------------

    def bulk_docs(self, request: Request) -> Response:
        allow(request, "POST")
        params = Params(request.params)
        body = read_bulk(request.body or b"")
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        if "docs" not in body:
            raise bad_request("POST body must include `docs` parameter.")
        if not isinstance(body["docs"], list):
            raise bad_request("`docs` parameter must be an array.")
        new_edits = body.get("new_edits", True) is not False
        edits = [self._edit_of(doc) for doc in body["docs"]]  # one bad document refuses them all
        status = 202 if (params.integer("w") or 1) > 1 else 201
        if not new_edits:
            for edit in edits:  # checked first: a refusal refuses all
                if not edit.docid.startswith(LOCAL):
                    replicated_history(edit)
            with self.db.batch():
                for edit in edits:
                    self._replicated(edit)
            return answer(status, [])
        with self.db.batch():
            results = [self._bulk_one(edit) for edit in edits]
        return answer(status, results)

    def _edit_of(self, doc: Any) -> Edit:
        docid = doc.get("_id") if isinstance(doc, dict) and "_id" in doc else self.new_id()
        return parse_edit(doc, docid)

    def _replicated(self, edit: Edit) -> None:
        if edit.docid.startswith(LOCAL):
            self.db.put_local(edit)
        else:
            self.db.replicate(edit)

    def _bulk_one(self, edit: Edit) -> dict:
        try:
            rev = self.db.put_local(edit) if edit.docid.startswith(LOCAL) else rev_text(self.db.update(edit))
        except HttpError as exc:
            return {"id": edit.docid, "error": exc.error, "reason": exc.reason}
        return {"ok": True, "id": edit.docid, "rev": rev}

    def bulk_get(self, request: Request) -> Response:
        allow(request, "POST")
        return answer(200, bulk_get(self.db, body_of(request), Params(request.params)))

    def all_docs(self, request: Request) -> Response:
        allow(request, "GET,HEAD,POST")
        keys = parse_keys(request.body) if request.method == "POST" else None
        return answer(200, all_docs(self.db, Params(request.params), keys), head=request.method == "HEAD")

    # -- the change feed --------------------------------------------------------

    async def changes(self, request: Request) -> Response:
        allow(request, "GET,POST")
        params = Params(request.params)
        feed_type = params.text("feed", "normal")
        if feed_type in ("continuous", "eventsource", "live"):
            raise not_implemented(f"feed={feed_type}")
        if feed_type not in ("normal", "longpoll"):
            raise bad_request("Supported `feed` types: normal, continuous, live, longpoll, eventsource")
        feed = Feed(self.db, params, body_of(request, b"{}") if request.method == "POST" else None)
        result = feed.read()
        if feed_type == "longpoll":
            timeout = params.integer("timeout")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + (LONGPOLL_TIMEOUT if timeout is None else timeout / 1000)
            while not result["results"] and not self.db.gone and (left := deadline - loop.time()) > 0:
                await self.db.next_change(left)
                result = feed.read()
        return answer(200, result)

    # -- the rest -----------------------------------------------------------------

    def purge(self, request: Request) -> Response:
        allow(request, "POST")
        body = body_of(request)
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        return answer(201, self.db.purge(body))

    def security(self, request: Request) -> Response:
        allow(request, "GET,PUT")
        if request.method == "GET":
            return answer(200, self.db.security)
        body = body_of(request)
        if not isinstance(body, dict) or not all(_is_access(body.get(k, {})) for k in ("admins", "members")):
            raise HttpError(500, "error", "no_majority")  # what CouchDB 3.5 answers
        self.db.security = body or DEFAULT_SECURITY
        return answer(200, {"ok": True})

    def revs_limit(self, request: Request) -> Response:
        allow(request, "GET,PUT")
        if request.method == "PUT":
            limit = body_of(request)
            if not isinstance(limit, int) or limit <= 0:
                raise bad_request("`limit` must be positive integer")
            self.db.revs_limit = limit
            return answer(200, {"ok": True})
        return answer(200, self.db.revs_limit)


def _is_access(entry: Any) -> bool:
    return isinstance(entry, dict) and all(isinstance(entry.get(k, []), list) for k in ("names", "roles"))


def _explicit_rev(request: Request, params: Params, body_rev: Any) -> Any:
    """The revision a PUT or DELETE names: ``_rev`` in the body, ``?rev=`` or ``If-Match``
    (which must agree), parsed; None for none."""
    query = params.text("rev")
    if query is not None and body_rev is not None and query != body_rev:
        raise bad_request("Document rev from request body and query string have different values")
    rev = body_rev if body_rev is not None else query
    header = _header(request, "If-Match")
    if header is not None:
        etag = header.strip().strip('"')
        if rev is not None and rev != etag:
            raise bad_request("Document rev and etag have different values")
        rev = etag
    return parse_rev(rev) if rev is not None else None


def _header(request: Request, name: str) -> str | None:
    return next((value for key, value in request.headers.items() if key.lower() == name.lower()), None)


def _matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` against a document's ETag (weak comparison)."""
    return header is not None and etag in (tag.strip().removeprefix("W/") for tag in header.split(","))
