"""``/v1``: typed documents over HTTP. Parse the request, call the store, answer."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import orjson

from .. import etags, query
from ..cache import wants_fresh
from ..design import indexes
from ..envelope import valid_id
from ..models import ModelType, ValidationFailed, Violation, check_limits
from ..store import Shown
from ..store.bulk import Deleted
from .base import JSON, BaseHandler
from .problem import Problem, from_exception

MERGE_PATCH = "application/merge-patch+json"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
WRITE_QUORUM = "Write-Quorum"


class ApiHandler(BaseHandler):
    """The body was streamed and its size checked by ``BaseHandler``."""

    def json_body(self, *media_types: str) -> Any:
        self._check_size(self._size)
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in media_types:
            raise Problem("unsupported_media_type", f"send {' or '.join(media_types)}")
        try:
            body = orjson.loads(b"".join(self._chunks))
        except orjson.JSONDecodeError as exc:
            raise Problem("invalid_json", str(exc)) from None
        check_limits(body)  # before anything else sees it: numbers and depth (models.limits)
        return body

    def model(self, name: str) -> ModelType:
        model = self.ctx.models.get(name)
        if model is None:
            raise Problem("unknown_type", f"no type {name!r}; GET /v1/_types lists them")
        self.context.doc_type = name
        return model

    def document_id(self, docid: str) -> str:
        if not valid_id(docid):
            raise Problem("invalid_id", "ids are 1-128 letters, digits, '_' or '-'")
        self.context.doc_id = docid  # ids are not secret (values are): the access line names it
        return docid

    def if_match(self) -> frozenset[str] | None:
        return etags.if_match(self.request.headers.get("If-Match"))

    def required_if_match(self) -> frozenset[str]:
        revisions = self.if_match()
        if revisions is None:
            raise Problem("precondition_required", "send If-Match with the ETag you last read")
        return revisions

    def write_document(self, shown: Shown, status: int = 200) -> None:
        self.set_header("ETag", etags.etag(shown.rev))
        self.mark_quorum(shown.below_quorum)
        self.write_json(shown.body, status)

    def mark_quorum(self, below_quorum: bool) -> None:
        """CouchDB stored the write on fewer copies than its write quorum (202)."""
        if below_quorum:
            self.set_header(WRITE_QUORUM, "not-met")


class CollectionHandler(ApiHandler):
    async def get(self, type_name: str) -> None:
        """A page of documents matching the query; ``next`` / ``Link`` continue it."""
        model = self.model(type_name)
        args = {name: self.get_query_arguments(name, strip=False) for name in self.request.query_arguments}
        fresh = wants_fresh(self.request.headers.get("Cache-Control"))
        page = await self.ctx.store.query(model, query.parse(model, args), fresh=fresh)
        if page.next is not None:
            following = {**{k: v[0] for k, v in args.items()}, "cursor": page.next}
            self.set_header("Link", f'<{self.request.path}?{urlencode(following)}>; rel="next"')
        body = {"items": page.items, "next": page.next}
        if page.omitted:
            body["omitted"] = page.omitted
        self.write_json(body)

    async def post(self, type_name: str) -> None:
        model = self.model(type_name)
        body = self.json_body(JSON)
        key = self.request.headers.get("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.match(key):
            raise Problem("bad_request", "Idempotency-Key must be 1-200 visible ASCII characters")
        shown = await self.ctx.store.create(model, body, key)
        self.context.doc_id = shown.id
        self.set_header("Location", f"/v1/{model.name}/{shown.id}")
        self.write_document(shown, 201 if shown.created else 200)


class DocumentHandler(ApiHandler):
    async def get(self, type_name: str, docid: str) -> None:
        """From the read cache when it holds the current version (``Cache-Control:
        no-cache`` reads CouchDB)."""
        model, docid = self.model(type_name), self.document_id(docid)
        headers = self.request.headers
        entry = await self.ctx.store.get_entry(model, docid, fresh=wants_fresh(headers.get("Cache-Control")))
        self.set_header("ETag", entry.etag)
        if etags.none_match(headers.get("If-None-Match"), entry.rev):
            self.set_status(304)
            self.finish()
            return
        self.set_header("Content-Type", JSON)
        self.finish(entry.body)

    async def head(self, type_name: str, docid: str) -> None:
        """``GET``'s answer without its body: Tornado sends none for HEAD, errors included."""
        await self.get(type_name, docid)

    async def put(self, type_name: str, docid: str) -> None:
        model, docid = self.model(type_name), self.document_id(docid)
        body = self.json_body(JSON)
        self.write_document(await self.ctx.store.replace(model, docid, body, self.required_if_match()))

    async def patch(self, type_name: str, docid: str) -> None:
        model, docid = self.model(type_name), self.document_id(docid)
        patch = self.json_body(MERGE_PATCH)
        self.write_document(await self.ctx.store.patch(model, docid, patch, self.if_match()))

    async def delete(self, type_name: str, docid: str) -> None:
        model, docid = self.model(type_name), self.document_id(docid)
        self.mark_quorum(await self.ctx.store.delete(model, docid, self.required_if_match()))
        self.set_status(204)
        self.finish()


class BulkHandler(ApiHandler):
    """``POST /v1/{type}/_bulk``: many writes of one type, one result each, in order."""

    async def post(self, type_name: str) -> None:
        model = self.model(type_name)
        body = self.json_body(JSON)
        if not isinstance(body, dict) or set(body) != {"items"} or not isinstance(body["items"], list):
            raise ValidationFailed([Violation("", 'send {"items": [...]}')])
        if len(body["items"]) > self.ctx.config.max_bulk:
            raise Problem("payload_too_large", f"at most {self.ctx.config.max_bulk} items per request")
        results = await self.ctx.store.bulk(model, body["items"])
        self.write_json({"results": [self.result(r) for r in results]})

    @staticmethod
    def result(result: Shown | Deleted | Exception) -> dict:
        if isinstance(result, Shown):
            status = 201 if result.created else 200
            return {"status": status, "id": result.id, "etag": etags.etag(result.rev), "body": result.body}
        if isinstance(result, Deleted):
            return {"status": 204, "id": result.id}
        problem = from_exception(result, 500)
        return {"status": problem.kind.status, "problem": problem.body()}


class VerifyHandler(ApiHandler):
    """``POST /v1/{type}/{id}/verify``: do candidates match the hashed properties?"""

    async def post(self, type_name: str, docid: str) -> None:
        model, docid = self.model(type_name), self.document_id(docid)
        candidates = self.json_body(JSON)
        self.write_json({"matches": await self.ctx.store.verify_secrets(model, docid, candidates)})


class TypesHandler(BaseHandler):
    def get(self) -> None:
        self.write_json(
            {
                "types": [
                    {
                        "name": model.name,
                        "version": model.version,
                        "delete": model.delete_policy,
                        "conflict": model.conflict_policy,
                        "indexes": [list(index.properties) for index in indexes(model)],
                        "migrates_from": sorted(model.migrations),
                        "schema": model.input_schema(),
                        "properties": {
                            p.name: {"protection": p.protection, "indexed": p.indexed}
                            | ({"merge": p.merge} if p.merge else {})
                            for p in model.properties.values()
                        },
                    }
                    for model in self.ctx.models
                ]
            }
        )


class OpenApiHandler(BaseHandler):
    def get(self) -> None:
        self.write_json(self.ctx.spec)
