"""One ``_changes`` request: a long poll's own timeout and a caller's deadline (``Database.changes``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import Timeout


async def ask_changes(
    request_json: Callable[..., Awaitable[Any]],
    target: str,
    since: Any,
    feed: str,
    timeout: float,
    limit: int | None,
    deadline: float | None,
    include_docs: bool,
    style: str | None,
    doc_ids: list[str] | None = None,
) -> dict:
    """One request to ``target`` (a database's ``_changes``) through ``request_json``
    (the server's ``json``); ``Database.changes`` says what the arguments do."""
    params = {
        "since": since,
        "feed": feed,
        "limit": limit,
        "include_docs": include_docs or None,
        "style": style,
        "filter": "_doc_ids" if doc_ids is not None else None,
    }
    if doc_ids is not None:  # only these documents' latest changes (a read: safe to retry)
        return await request_json("POST", target, params=params, json={"doc_ids": doc_ids}, idempotent=True)
    if feed == "longpoll":
        params["timeout"] = int(timeout * 1000)
    try:
        async with asyncio.timeout(deadline):
            return await request_json(  # a longpoll timing out is an answer, not a failure to retry
                "GET",
                target,
                params=params,
                timeout=deadline or timeout + 2.0,
                idempotent=feed != "longpoll",
                long_poll=feed == "longpoll",
            )
    except Timeout:
        if feed != "longpoll" or deadline is not None:
            raise
        return {"results": [], "last_seq": since, "pending": None}
    except TimeoutError:  # the deadline, across retries
        if deadline is None:
            raise
        raise Timeout("GET", target, reason=f"no answer within {deadline:g} s") from None
