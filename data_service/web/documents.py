"""``/v1``: typed documents over HTTP. Parse the request, call the store, answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from .. import etags, idempotency, query
from ..design import indexes
from ..envelope import valid_id
from ..lifecycle import Op
from ..models import ModelType, ValidationFailed, Violation, check_limits
from ..problems import Code
from ..store import Answer, Change
from .accept import wants_fresh
from .base import JSON, BaseHandler
from .problem import Problem, from_exception

MERGE_PATCH = "application/merge-patch+json"
WRITE_QUORUM = "Write-Quorum"


class ApiHandler(BaseHandler):
    """The body was streamed and its size checked by ``BaseHandler``."""

    def json_body(self, *media_types: str) -> Any:
        self._check_size(self._size)
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in media_types:
            raise Problem(Code.UNSUPPORTED_MEDIA_TYPE, f"send {' or '.join(media_types)}")
        try:
            body = orjson.loads(b"".join(self._chunks))
        except orjson.JSONDecodeError as exc:
            raise Problem(Code.INVALID_JSON, str(exc)) from None
        check_limits(body)  # before anything else sees it: numbers and depth (models.limits)
        return body

    def model(self, name: str) -> ModelType:
        model = self.ctx.models.get(name)
        if model is None:
            raise Problem(Code.UNKNOWN_TYPE, f"no type {name!r}; GET /v1/_types lists them")
        self.context.doc_type = name
        return model

    def document_id(self, docid: str) -> str:
        if not valid_id(docid):
            raise Problem(Code.INVALID_ID, "ids are 1-128 letters, digits, '_' or '-'")
        self.context.doc_id = docid  # ids are not secret (values are): the access line names it
        return docid

    def if_match(self) -> frozenset[str] | None:
        return etags.if_match(self.request.headers.get("If-Match"))

    def required_if_match(self) -> frozenset[str]:
        revisions = self.if_match()
        if revisions is None:
            raise Problem(Code.PRECONDITION_REQUIRED, "send If-Match with the ETag you last read")
        return revisions

    def idempotency_key(self) -> str | None:
        key = self.request.headers.get("Idempotency-Key")
        if key is not None and not idempotency.KEY.match(key):
            raise Problem(Code.BAD_REQUEST, "Idempotency-Key must be 1-200 visible ASCII characters")
        return key

    def write_answer(self, answer: Answer, status: int = 200) -> None:
        """A document answer: its ETag, ``Write-Quorum: not-met`` when it is provisional,
        and its representation as serialized once by the store (204 for a delete)."""
        self.set_header("ETag", answer.etag)
        if answer.below_quorum:
            self.set_header(WRITE_QUORUM, "not-met")
        if answer.deleted:
            self.set_status(204)
            self.finish()
            return
        self.set_status(status)
        self.set_header("Content-Type", JSON)
        self.finish(answer.body)


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
        answer = await self.ctx.store.create(model, body, self.idempotency_key())
        self.context.doc_id = answer.id
        self.set_header("Location", f"/v1/{model.name}/{answer.id}")
        self.write_answer(answer, 201 if answer.created else 200)


class DocumentHandler(ApiHandler):
    async def get(self, type_name: str, docid: str) -> None:
        """From the read cache when it holds the current version (``Cache-Control:
        no-cache`` reads CouchDB)."""
        model, docid = self.model(type_name), self.document_id(docid)
        headers = self.request.headers
        entry = await self.ctx.store.get(model, docid, fresh=wants_fresh(headers.get("Cache-Control")))
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
        self.write_answer(await self.ctx.store.replace(model, docid, body, self.required_if_match()))

    async def patch(self, type_name: str, docid: str) -> None:
        model, docid = self.model(type_name), self.document_id(docid)
        patch = self.json_body(MERGE_PATCH)
        self.write_answer(await self.ctx.store.patch(model, docid, patch, self.if_match()))

    async def delete(self, type_name: str, docid: str) -> None:
        model, docid = self.model(type_name), self.document_id(docid)
        self.write_answer(await self.ctx.store.delete(model, docid, self.required_if_match()))


class BulkHandler(ApiHandler):
    """``POST /v1/{type}/_bulk``: many writes of one type, one result each, in order."""

    async def post(self, type_name: str) -> None:
        model = self.model(type_name)
        body = self.json_body(JSON)
        if not isinstance(body, dict) or set(body) != {"items"} or not isinstance(body["items"], list):
            raise ValidationFailed([Violation("", 'send {"items": [...]}')])
        if len(body["items"]) > self.ctx.config.max_bulk:
            raise Problem(Code.PAYLOAD_TOO_LARGE, f"at most {self.ctx.config.max_bulk} items per request")
        results = await self.ctx.store.write(model, [bulk_item(raw) for raw in body["items"]])
        self.write_json({"results": [self.result(r) for r in results]})

    @staticmethod
    def result(result: Answer | Exception) -> dict:
        if isinstance(result, Exception):
            problem = from_exception(result, 500)
            return {"status": problem.kind.status, "problem": problem.body()}
        if result.deleted:
            return {"status": 204, "id": result.id}
        status = 201 if result.created else 200
        return {"status": status, "id": result.id, "etag": result.etag, "body": orjson.Fragment(result.body)}


BULK_FIELDS = {
    Op.CREATE: {"op", "body", "idempotency_key"},
    Op.REPLACE: {"op", "id", "if_match", "body"},
    Op.PATCH: {"op", "id", "if_match", "patch"},
    Op.DELETE: {"op", "id", "if_match"},
}


def bulk_item(raw: Any) -> Change:
    """One item of ``{"items": [...]}`` as the write it asks for; a malformed item is a
    change already answered with its ValidationFailed (the others go on)."""
    if not isinstance(raw, dict) or raw.get("op") not in tuple(Op):
        return Change(Op.CREATE, None, answer=ValidationFailed([Violation("/op", f"one of {', '.join(Op)}")]))
    op, docid, key = Op(raw["op"]), raw.get("id"), raw.get("idempotency_key")
    wrong = [Violation(f"/{name}", "not allowed here") for name in raw if name not in BULK_FIELDS[op]]
    if op is not Op.CREATE and not (isinstance(docid, str) and valid_id(docid)):
        wrong.append(Violation("/id", "a document id"))
    if key is not None and not (isinstance(key, str) and idempotency.KEY.match(key)):
        wrong.append(Violation("/idempotency_key", "1-200 visible ASCII characters"))
    try:
        if_match = etags.if_match(raw["if_match"]) if isinstance(raw.get("if_match"), str) else None
    except etags.MalformedCondition:
        if_match = None
        wrong.append(Violation("/if_match", '"*" or a list of entity tags ("<rev>")'))
    values = raw.get("patch") if op is Op.PATCH else raw.get("body")
    change = Change(op, docid if op is not Op.CREATE else None, values, if_match, key)
    if wrong:
        change.answer = ValidationFailed(wrong)
    return change


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
