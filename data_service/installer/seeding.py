"""The install step for one seed document: created, updated or left as it is."""

from __future__ import annotations

from ..couchdb import NotFound
from ..models import ModelType
from ..protection import IntegrityViolation, KeyUnavailable
from ..seeds import Seed
from ..store import ANY_REVISION, DocumentNotFound, DocumentStore
from .step import InstallFailed, Step


async def seed_step(store: DocumentStore, exists: bool, model: ModelType, seed: Seed) -> Step:
    docid = seed.docid
    create = Step("create", f"create {seed.label} ({docid})", lambda: store.create_with_id(model, docid, seed.data))
    if not exists:
        return create
    try:
        doc = await store.read(model, docid)
    except DocumentNotFound:
        try:
            await store.db.get(docid)
        except NotFound:
            return create
        return Step("note", f"leave {seed.label}: {docid} is deleted or not a {model.name} v{model.major}")
    except (IntegrityViolation, KeyUnavailable) as exc:
        raise InstallFailed(f"{seed.label}: document {docid} fails its check ({exc}); not overwritten") from None
    if await _same(store, model, doc, seed.data):
        return Step("unchanged", f"unchanged {seed.label}")
    return Step(
        "update",
        f"update {seed.label} ({docid}: properties differ)",
        lambda: store.replace(model, docid, seed.data, frozenset({ANY_REVISION})),
    )


async def _same(store: DocumentStore, model: ModelType, doc: dict, data: dict) -> bool:
    """Whether ``doc`` holds ``data``: readable values compared in clear, hashed ones verified."""
    hidden = {name for name, prop in model.properties.items() if not prop.readable}
    shown = {k: v for k, v in store.lifecycle.representation(model, doc).items() if k not in ("id", "meta")}
    if shown != {k: v for k, v in data.items() if k not in hidden}:
        return False
    secrets = {k: v for k, v in data.items() if k in hidden}
    if set(secrets) != hidden & set(doc) or not all(isinstance(v, str) for v in secrets.values()):
        return False
    return not secrets or all((await store.verify_secrets(model, doc["_id"], secrets)).values())
