"""What CouchDB answered a write or a view, as the client hands it on (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .transport import Response


@dataclass(frozen=True)
class WriteResult:
    id: str
    rev: str
    accepted: bool = False  # 202: stored, but the write quorum was not met


@dataclass(frozen=True)
class Saved:
    """What CouchDB did with one document of a ``save``: its new revision (None: not
    stored, ``error`` says why), whether fewer copies than asked stored it (202), and
    whether the request was sent again after an attempt got no answer."""

    id: str
    rev: str | None
    accepted: bool = False
    error: str | None = None
    reason: str | None = None
    retried: bool = False


@dataclass(frozen=True)
class ViewResult:
    rows: list[dict]
    total_rows: int | None = None
    offset: int | None = None


def write_result(response: Response) -> WriteResult:
    body = response.json()
    return WriteResult(body["id"], body["rev"], accepted=response.status == 202)


def saved_of(docs: list[dict[str, Any]], results: list[dict[str, Any]], response: Response) -> list[Saved]:
    """``_bulk_docs`` results as ``Saved``, in the order of ``docs``."""
    flagged = any(result.get("accepted") for result in results)  # CouchDB flags each; else all of a 202
    return [
        Saved(
            str(result.get("id") or doc.get("_id")),
            result.get("rev") if not result.get("error") else None,
            bool(result.get("accepted")) or (response.status == 202 and not flagged and not result.get("error")),
            result.get("error"),
            result.get("reason"),
            response.retried,
        )
        for doc, result in zip(docs, results, strict=True)
    ]
