"""Documents of the conflict models (``tests/conflict_models.yaml``) made as sidecars make
them, at chosen times, and concurrent leaves stored as replication stores them."""

from __future__ import annotations

import uuid

from data_service.lifecycle import Lifecycle
from data_service.models import load_models
from support import ROOT

MODELS_PATH = ROOT / "tests" / "conflict_models.yaml"
MODELS = load_models(MODELS_PATH)
PROFILE, CART = MODELS.get("profile"), MODELS.get("cart")  # conflict: latest; conflict: merge


def at(n: float) -> str:
    """A timestamp n seconds into a fixed minute (pure tests choose their own clock)."""
    return f"2026-01-01T00:00:{n:06.3f}Z"


def make(keys, model, props: dict, when: str, writer: str = "w0", docid: str | None = None, rev: str = "1-0a") -> dict:
    """A document as a sidecar creates it (stamped and signed), with ``rev``."""
    return {**Lifecycle(keys, writer).create(model, docid or uuid.uuid4().hex, props, {}, when).doc, "_rev": rev}


def edit(keys, model, current: dict, changes: dict, when: str, writer: str, rev: str) -> dict:
    """``current`` after a sidecar's merge patch of ``changes`` (None removes), with ``rev``."""
    return {**Lifecycle(keys, writer).patch(model, current, changes, {}, when).doc, "_rev": rev}


def clear(keys, model, doc: dict) -> dict:
    return Lifecycle(keys, "reader").clear(model, doc)


def body(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("_rev", "sig", "_conflicts")}


async def fork(db, current: dict, *leaves: dict) -> list[str]:
    """Store ``leaves`` as concurrent children of ``current`` (replication style, as two
    nodes or two databases replicating make them); their revisions."""
    generation, parent = current["_rev"].split("-", 1)
    child = int(generation) + 1
    docs, revs = [], []
    for leaf in leaves:
        digest = uuid.uuid4().hex
        revs.append(f"{child}-{digest}")
        docs.append({**leaf, "_rev": revs[-1], "_revisions": {"start": child, "ids": [digest, parent]}})
    assert await db.bulk_docs(docs, new_edits=False) == []
    return revs
