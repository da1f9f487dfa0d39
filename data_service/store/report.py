"""What the database and its view indexes hold: ``GET /_metrics/database``."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import design
from ..couchdb import Database, NotFound
from ..models import Models
from ..vocabulary import JSONObject

UNAVAILABLE = "unavailable"


async def database_report(db: Database, models: Models) -> JSONObject:
    """Database counts and sizes, and view index sizes per generated design doc.
    What the server does not report is ``"unavailable"``, never zero."""
    names = [name for name, doc in design.design_docs(models).items() if "views" in doc]
    # All requests finish before any error is raised: none outlives the answer.
    results: list[Any] = await asyncio.gather(db.info(), *(_view_index(db, n) for n in names), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    info, *indexes = results
    sizes = _sizes(info.get("sizes"))
    fragmentation = None
    if isinstance(sizes, dict) and sizes["file"] > 0:
        fragmentation = round((sizes["file"] - sizes["active"]) / sizes["file"], 4)
    return {
        "database": db.name,
        "doc_count": info.get("doc_count"),
        "doc_del_count": info.get("doc_del_count"),
        "sizes": sizes,
        "fragmentation": fragmentation,
        "design_docs": {
            name: {"sizes": _sizes(index.get("sizes")), "updates_pending": _pending(index.get("updates_pending"))}
            for name, index in zip(names, indexes, strict=True)
        },
    }


async def _view_index(db: Database, name: str) -> JSONObject:
    """``view_index`` of ``_design/<name>/_info``; ``{}`` when not installed or a stub."""
    try:
        body = await db.design_info(name)
    except NotFound:
        return {}
    index = body.get("view_index") if isinstance(body, dict) else None
    return index if isinstance(index, dict) else {}  # pouchdb-server: "Not implemented."


def _sizes(sizes: Any) -> JSONObject | str:
    keys = ("file", "active", "external")
    if isinstance(sizes, dict) and all(isinstance(sizes.get(k), int) for k in keys):
        return {k: sizes[k] for k in keys}
    return UNAVAILABLE


def _pending(pending: Any) -> JSONObject | str:
    """CouchDB 3.x: ``{"minimum", "preferred", "total"}``."""
    if isinstance(pending, dict) and pending and all(isinstance(v, int) for v in pending.values()):
        return pending
    if isinstance(pending, int):
        return {"total": pending}
    return UNAVAILABLE
