"""A CouchDB transport answering from a function of the request, behind the client's one
seam (``data_service/couchdb/transport.py``): for the client's own decisions. Tests of what
sits above the client use the in-memory CouchDB (``data_service.couchdb.memory``)."""

from __future__ import annotations

import orjson

from data_service.couchdb import AsyncTransport, Request, Response


class FakeTransport(AsyncTransport):
    """Answers from a function of the request; records every request."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[Request] = []

    async def handle(self, request: Request) -> Response:
        self.requests.append(request)
        result = self.answer(request)
        if isinstance(result, Exception):
            raise result
        status, body = result
        return Response(status, orjson.dumps(body))


def scripted(*answers):
    """A transport answering with ``answers`` in turn (the last one repeats)."""
    queue = list(answers)
    return FakeTransport(lambda req: queue.pop(0) if len(queue) > 1 else queue[0])
