"""What the CouchDB conformance contracts share: raw calls through the client's transport
seam (statuses, headers and bodies as the server gave them) and the dev server's known
deviations from CouchDB 3.5, each stated where a test meets it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from support import database_with

from data_service.couchdb import CouchDB, Database, Request
from data_service.couchdb.client import encode_params

POUCHDB = "pouchdb-server"
_NO_BODY: Any = object()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    @property
    def etag(self) -> str | None:
        return self.header("ETag")


async def call(
    couch: CouchDB,
    method: str,
    target: str,
    *,
    params: dict[str, Any] | None = None,
    json: Any = _NO_BODY,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request as sent, one answer as received: no retries, no error mapping."""
    body = None if json is _NO_BODY else orjson.dumps(json)
    request = Request(method, target, encode_params(params or {}), body, headers or {})
    response = await couch.transport.handle(request)
    return Answer(response.status, response.json() if response.body else None, response.headers)


def doc_path(db: Database, docid: str) -> str:
    """The encoded path of ``docid`` in ``db`` (``_design/`` and ``_local/`` keep their slash)."""
    return db._doc_path(docid)


def by_server(kind: str, couchdb: Any, *, pouchdb: Any) -> Any:
    """What the server under test answers: CouchDB's behaviour, or the dev server's
    documented deviation (DESIGN-NOTES section 3, docs/testing.md)."""
    return pouchdb if kind == POUCHDB else couchdb


def one_shard_database(couch: CouchDB) -> contextlib.AbstractAsyncContextManager[Database]:
    """A database of one shard (``q=1``; servers without shards ignore it), dropped afterwards:
    for behaviour CouchDB decides per shard."""
    return database_with(couch, q=1)


def replicated(docid: str, rev: str, history: list[str], **body: Any) -> dict:
    """A revision as replication writes it (``new_edits: false``): ``history`` is the
    revision ids from ``rev``'s down to the root's."""
    return {"_id": docid, "_rev": rev, "_revisions": {"start": int(rev.split("-")[0]), "ids": history}, **body}
