"""``GET /v1/{type}/_changes``: the verified change feed, as JSON (normal or long poll)
or as server-sent events (``Accept: text/event-stream``, resumable with ``Last-Event-ID``).

When the drain begins (``InFlight.closing``) a long poll stops waiting and answers what
a normal read finds (usually nothing) with its ``last`` position, and an event stream
sends a final ``end`` event (its ``id`` the position to resume from) and closes: neither
holds the drain, neither is cut off."""

from __future__ import annotations

import re

import orjson
from tornado.iostream import StreamClosedError

from ..errors import ServiceError
from ..models import ModelType
from ..problems import Code
from ..store.changes import Changes
from .documents import JSON, ApiHandler
from .inflight import Closing
from .problem import Problem

EVENT_STREAM = "text/event-stream"
MAX_LIMIT = 1000
POSITION = re.compile(r"now|[A-Za-z0-9_-]{44,}")  # the spec's pattern; the store decodes and checks it
POLL_SECONDS = 25.0  # one long poll of an event stream; an empty one sends a keep-alive comment


class ChangesHandler(ApiHandler):
    produces = (JSON, EVENT_STREAM)

    async def get(self, type_name: str) -> None:
        model = self.model(type_name)
        since = self.get_query_argument("since", None, strip=False)
        resumed = self.request.headers.get("Last-Event-ID")
        if any(value is not None and not POSITION.fullmatch(value) for value in (since, resumed)):
            raise Problem(
                Code.INVALID_QUERY, "since, Last-Event-ID: a position from an earlier answer (or leave it out)"
            )
        # An EventSource reconnects to the URL it began with plus Last-Event-ID, the later position.
        since = resumed or since
        limit = self.number("limit", 100, 1, MAX_LIMIT)
        timeout = self.number("timeout", 30, 1, 60)  # checked even when not long-polling
        if EVENT_STREAM in self.request.headers.get("Accept", ""):
            with self.ctx.streams.hold():
                await self.stream(model, since, limit)
            return
        feed = self.get_query_argument("feed", "normal")
        if feed not in ("normal", "longpoll"):
            raise Problem(Code.INVALID_QUERY, "feed: normal or longpoll")
        if feed == "normal":
            self.write_json(self.body(await self.ctx.store.changes(model, since, limit, None)))
            return
        self.ctx.inflight.streaming(self)
        with self.ctx.streams.hold():
            try:
                changes = await self.ctx.inflight.unless_closing(self.ctx.store.changes(model, since, limit, timeout))
            except Closing:  # shutting down: what there is now, and where to resume
                changes = await self.ctx.store.changes(model, since, limit, None)
        self.write_json(self.body(changes))

    def number(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, str(default), strip=False)
        if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
            raise Problem(Code.INVALID_QUERY, f"{name}: a whole number from {low} to {high}")
        return int(raw)

    @staticmethod
    def body(changes: Changes) -> dict:
        body: dict = {"results": changes.results, "last": changes.last}
        if changes.omitted:
            body["omitted"] = changes.omitted
        return body

    def event(self, kind: str, item: dict) -> None:
        self.write(f"id: {item['position']}\nevent: {kind}\ndata: ".encode() + orjson.dumps(item) + b"\n\n")

    async def stream(self, model: ModelType, since: str | None, limit: int) -> None:
        """Events until the client goes: ``change`` (a result) and ``omitted`` (a document
        failing its check), each with the position after it as its ``id``. If CouchDB fails
        mid-stream the stream ends; the client reconnects with ``Last-Event-ID``."""
        changes = await self.ctx.store.changes(model, since, limit, None)  # a bad position: a problem, not a stream
        self.set_header("Content-Type", EVENT_STREAM)
        self.set_header("Cache-Control", "no-cache")
        self.ctx.inflight.streaming(self)
        try:
            while True:
                for kind, item in changes.events:
                    self.event(kind, item)
                if not changes.events:
                    self.write(b": keep-alive\n\n")
                await self.flush()
                try:
                    wait = self.ctx.store.changes(model, changes.last, limit, POLL_SECONDS)
                    changes = await self.ctx.inflight.unless_closing(wait)
                except Closing:  # shutting down: the client resumes elsewhere, from here
                    self.event("end", {"reason": "draining", "position": changes.last})
                    self.finish()
                    return
        except StreamClosedError:
            return
        except ServiceError:  # CouchDB failed, the stream has begun: end it; the client reconnects with Last-Event-ID
            self.finish()
