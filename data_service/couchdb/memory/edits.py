"""A document as a write presents it: checked the way CouchDB checks it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .http import bad_request, not_implemented
from .revtree import Rev, kept_hash, parse_rev

KEPT = frozenset({"_id", "_rev", "_deleted", "_revisions", "_attachments"})
IGNORED = frozenset({"_conflicts", "_deleted_conflicts", "_revs_info", "_local_seq"})  # read-only: dropped
LOCAL = "_local/"
DESIGN = "_design/"


@dataclass(slots=True)
class Edit:
    docid: str
    rev: Rev | None  # _rev: the parent of an interactive edit, the revision of a replicated one
    history: list[Rev] | None  # _revisions, newest first
    body: dict  # without the special members
    deleted: bool


def check_docid(docid: Any) -> str:
    if not isinstance(docid, str):
        raise bad_request("Document id must be a string", "illegal_docid")
    if not docid:
        raise bad_request("Document id must not be empty", "illegal_docid")
    if docid.startswith("_") and not docid.startswith((DESIGN, LOCAL)):
        raise bad_request("Only reserved document ids may start with underscore.", "illegal_docid")
    return docid


def parse_edit(doc: Any, docid: Any) -> Edit:
    """``doc`` (a parsed JSON body) as an edit of ``docid``; 400 as CouchDB answers it."""
    if not isinstance(doc, dict):
        raise bad_request("Document must be a JSON object")
    body = {}
    for key, value in doc.items():
        if not key.startswith("_"):
            body[key] = value
        elif key not in KEPT and key not in IGNORED:
            raise bad_request(f"Bad special document member: {key}", "doc_validation")
    if doc.get("_attachments"):
        raise not_implemented("attachments")
    rev = parse_rev(doc["_rev"]) if "_rev" in doc else None
    history = _history(doc["_revisions"]) if "_revisions" in doc else None
    return Edit(check_docid(docid), rev, history, body, doc.get("_deleted") is True)


def _history(revisions: Any) -> list[Rev]:
    start = revisions.get("start") if isinstance(revisions, dict) else None
    ids = revisions.get("ids") if isinstance(revisions, dict) else None
    if (
        not isinstance(start, int)
        or not isinstance(ids, list)
        or not ids
        or start < len(ids)
        or not all(isinstance(i, str) and i for i in ids)
    ):
        raise bad_request("Invalid rev format")
    return [(start - offset, kept_hash(digest)) for offset, digest in enumerate(ids)]
