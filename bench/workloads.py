"""The request functions of each workload of ``python -m bench``, straight to CouchDB and
through the sidecar, and their setup."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import orjson

from .couch import Couch
from .measure import JSON_HEADERS, now

BULK = 50  # notes created per request of the bulk workload
PAGE = 50  # items per query page
GET_DOCS = 100  # docs read round-robin by the get workload
BODY = "x" * 200
NOTE_TAG = "note_v1.0"  # the envelope's type tag for models/sample.yaml's note 1.0


class Targets:
    """The request functions of each workload, direct and through the sidecar."""

    def __init__(self, couch: Couch, database: str, sidecar_url: str) -> None:
        self.db_url = f"{couch.url}/{database}"
        self.sidecar_url = sidecar_url
        self.get_ids: list[str] = []
        # What a direct write sends: a note as the sidecar stores it (type tag, meta, signature
        # envelope, properties), copied from one the sidecar wrote. Same size and shape, and it
        # passes the installer's validate_doc_update (which checks the envelope's shape; it
        # cannot check the MAC). Direct docs are never read through the sidecar.
        self.template: dict[str, Any] = {"type": NOTE_TAG, "meta": {}, "title": "bench", "body": BODY}
        self.direct_docs: list[list[str]] = []  # [id, rev] per update worker
        self.sidecar_docs: list[list[str]] = []  # [id, etag] per update worker

    # setup (not measured)

    def envelope(self, docid: str | None = None, rev: str | None = None, counter: int | None = None) -> dict:
        at = now()
        doc: dict[str, Any] = {}
        if docid is not None:
            doc["_id"] = docid
        if rev is not None:
            doc["_rev"] = rev
        doc.update(self.template)
        doc["meta"] = {**self.template.get("meta", {}), "created_at": at, "updated_at": at}
        if counter is not None:
            doc["counter"] = counter
        return doc

    async def prepare_get(self, session: aiohttp.ClientSession, direct: aiohttp.ClientSession) -> None:
        for _ in range(GET_DOCS):
            async with session.post(
                f"{self.sidecar_url}/v1/note", headers=JSON_HEADERS, data=orjson.dumps({"title": "bench", "body": BODY})
            ) as resp:
                body = await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"creating a note through the sidecar: {resp.status} {body[:300]!r}")
                self.get_ids.append(orjson.loads(body)["id"])
        async with direct.get(f"{self.db_url}/{self.get_ids[0]}") as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"reading a note from CouchDB: {resp.status} {body[:300]!r}")
            self.template = {k: v for k, v in orjson.loads(body).items() if not k.startswith("_")}

    async def prepare_update(self, direct: aiohttp.ClientSession, sidecar: aiohttp.ClientSession, workers: int) -> None:
        for _ in range(workers):
            docid = uuid.uuid4().hex
            async with direct.put(
                f"{self.db_url}/{docid}", headers=JSON_HEADERS, data=orjson.dumps(self.envelope())
            ) as resp:
                body = await resp.read()
                if resp.status not in (201, 202):
                    raise RuntimeError(f"creating a doc in CouchDB: {resp.status} {body[:300]!r}")
                self.direct_docs.append([docid, orjson.loads(body)["rev"]])
            async with sidecar.post(
                f"{self.sidecar_url}/v1/note", headers=JSON_HEADERS, data=orjson.dumps({"title": "bench", "body": BODY})
            ) as resp:
                body = await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"creating a note through the sidecar: {resp.status} {body[:300]!r}")
                self.sidecar_docs.append([orjson.loads(body)["id"], resp.headers["ETag"]])

    # get

    async def get_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(f"{self.db_url}/{self.get_ids[i % len(self.get_ids)]}") as resp:
            await resp.read()
            return resp.status

    async def get_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(f"{self.sidecar_url}/v1/note/{self.get_ids[i % len(self.get_ids)]}") as resp:
            await resp.read()
            return resp.status

    # get-nocache: the same reads, the sidecar's read cache bypassed (Cache-Control: no-cache)

    async def get_nocache_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        return await self.get_direct(session, i, w)

    async def get_nocache_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(
            f"{self.sidecar_url}/v1/note/{self.get_ids[i % len(self.get_ids)]}", headers={"Cache-Control": "no-cache"}
        ) as resp:
            await resp.read()
            return resp.status

    # query: the first page of 50 notes from the type's listing view (one design doc per view)

    async def query_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(
            f"{self.db_url}/_design/ds_note_v1/_view/index",
            params={"startkey": "[]", "endkey": "[{}]", "include_docs": "true", "limit": str(PAGE)},
        ) as resp:
            await resp.read()
            return resp.status

    async def query_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.get(f"{self.sidecar_url}/v1/note", params={"limit": str(PAGE)}) as resp:
            await resp.read()
            return resp.status

    # create

    async def create_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.put(
            f"{self.db_url}/{uuid.uuid4().hex}", headers=JSON_HEADERS, data=orjson.dumps(self.envelope())
        ) as resp:
            await resp.read()
            return resp.status

    async def create_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        async with session.post(
            f"{self.sidecar_url}/v1/note", headers=JSON_HEADERS, data=orjson.dumps({"title": "bench", "body": BODY})
        ) as resp:
            await resp.read()
            return resp.status

    async def settle(self, direct: aiohttp.ClientSession) -> None:
        """Bring every view index up to date, so that a measurement never pays for indexing
        the documents an earlier one wrote (the sidecar's conflict sweep queries a view
        every minute, and CouchDB indexes on query)."""
        params = {"startkey": '"_design/"', "endkey": '"_design0"', "include_docs": "true"}
        async with direct.get(f"{self.db_url}/_all_docs", params=params) as resp:
            rows = orjson.loads(await resp.read())["rows"] if resp.status == 200 else []  # pouchdb: text/plain
        for row in rows:
            for view in row["doc"].get("views", {}):
                async with direct.get(f"{self.db_url}/{row['id']}/_view/{view}", params={"limit": "0"}) as resp:
                    await resp.read()

    # bulk: BULK new notes per request (CouchDB's _bulk_docs / the sidecar's POST /v1/note/_bulk)

    async def bulk_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        docs = [{"_id": uuid.uuid4().hex, **self.envelope()} for _ in range(BULK)]
        async with session.post(
            f"{self.db_url}/_bulk_docs", headers=JSON_HEADERS, data=orjson.dumps({"docs": docs})
        ) as resp:
            body = await resp.read()
            return resp.status if resp.status != 201 or all("ok" in r for r in orjson.loads(body)) else 500

    async def bulk_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        items = [{"op": "create", "body": {"title": "bench", "body": BODY}} for _ in range(BULK)]
        async with session.post(
            f"{self.sidecar_url}/v1/note/_bulk", headers=JSON_HEADERS, data=orjson.dumps({"items": items})
        ) as resp:
            body = await resp.read()
            ok = resp.status == 200 and all(r.get("status") == 201 for r in orjson.loads(body)["results"])
            return resp.status if ok or resp.status != 200 else 500

    # update: worker w owns doc w; a failed write re-reads the revision (not timed apart)

    async def update_direct(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        state = self.direct_docs[w]
        async with session.put(
            f"{self.db_url}/{state[0]}", headers=JSON_HEADERS, data=orjson.dumps(self.envelope(state[0], state[1], i))
        ) as resp:
            body = await resp.read()
            if 200 <= resp.status < 300:
                state[1] = orjson.loads(body)["rev"]
                return resp.status
        async with session.get(f"{self.db_url}/{state[0]}") as again:
            state[1] = orjson.loads(await again.read())["_rev"]
        return resp.status

    async def update_sidecar(self, session: aiohttp.ClientSession, i: int, w: int) -> int:
        state = self.sidecar_docs[w]
        async with session.put(
            f"{self.sidecar_url}/v1/note/{state[0]}",
            headers={**JSON_HEADERS, "If-Match": state[1]},
            data=orjson.dumps({"title": "bench", "body": BODY, "counter": i}),
        ) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                state[1] = resp.headers["ETag"]
                return resp.status
        async with session.get(f"{self.sidecar_url}/v1/note/{state[0]}") as again:
            await again.read()
            state[1] = again.headers.get("ETag", state[1])
        return resp.status
