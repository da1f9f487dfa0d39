"""Errors as HTTP answers: RFC 9457 problems from the one error table (``problems``)."""

from __future__ import annotations

from typing import Any

from tornado.web import HTTPError

from ..errors import ServiceError
from ..problems import BY_STATUS, RETRY_AFTER_SECONDS, TABLE, Code


class Problem(HTTPError):
    """An error answer. ``extensions`` become extra members of the body."""

    def __init__(
        self, code: Code, detail: str | None = None, *, headers: dict | None = None, **extensions: Any
    ) -> None:
        self.kind = TABLE[code]
        super().__init__(self.kind.status)
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions
        if self.kind.retryable and self.kind.status == 503:
            self.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:data-service:problem:{self.code}",
            "title": self.kind.title,
            "status": self.kind.status,
            "code": self.code,
            "retryable": self.kind.retryable,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


def from_exception(exc: BaseException | None, status: int) -> Problem:
    """Any exception (or bare status) as a Problem; unknown ones are 500s without detail."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ServiceError):
        return Problem(exc.code, exc.detail, headers=exc.headers(), **exc.extensions())
    if isinstance(exc, HTTPError):
        status = exc.status_code
    return Problem(BY_STATUS.get(status) or (Code.INTERNAL_ERROR if status >= 500 else Code.BAD_REQUEST))
