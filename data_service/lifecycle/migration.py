"""A document of an older major version, upgraded (pure): verified first (by the
caller), its values revealed under that version's declarations, the type's migration
steps applied to the clear values, the result validated against the current version
and protected as it — what the next write stores over it, and what ``data-service
migrate`` writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import envelope
from ..conflicts import bookkeeping
from ..models import DEFAULT_BCRYPT_COST, Hidden, MigrationFailed, ModelType, ValidationFailed, Values
from ..models.migrations import same
from ..protection import Keyring
from ..protection.kinds import Slot
from ..vocabulary import Clear, Stored


def upgraded(keys: Keyring, model: ModelType, doc: Stored) -> Stored:
    """``doc`` (verified, of an older major of ``model``) upgraded by the type's
    migrations: the stored document of ``model``'s version, ``meta`` times unchanged,
    not signed yet. Values the steps leave as they were keep their stored form.
    MigrationFailed when the result is not valid."""
    docid, major = doc["_id"], (envelope.tag_of(doc) or ("", 0, 0))[1]
    declared = model.migrations[major].properties
    values = Values({}, {})
    for name, stored in envelope.properties(doc).items():  # revealed as the old version declared them
        prop = declared.get(name)
        if prop is None:
            raise MigrationFailed(docid, f"property {name!r} is not declared in version {major}'s properties")
        slot = Slot(model.name, name, docid, prop.bcrypt_cost or DEFAULT_BCRYPT_COST)
        values.values[name] = prop.kind.reveal(keys, slot, stored) if prop.readable else Hidden(stored)
        values.origin[name] = name
    before = dict(values.values)
    for source in range(major, model.major):
        values.apply(model.migrations[source], docid)
    clear = _upgraded_values(model, values, declared, docid)
    unchanged = {
        name for name, value in clear.items() if (was := values.origin[name]) in before and same(before[was], value)
    }
    stored = {name: value.stored for name, value in values.values.items() if isinstance(value, Hidden)}
    for name, value in clear.items():
        prop = model.properties[name]
        kept = name in unchanged and values.origin[name] == name and declared[name].kind is prop.kind
        stored[name] = doc[name] if kept else prop.kind.protect(keys, model.slot(name, docid), value)
    new = {"_id": docid, "_rev": doc["_rev"], "type": model.tag, "meta": dict(doc.get("meta") or {}), **stored}
    return bookkeeping.migrated(model, doc, new, values.origin, unchanged)


def _upgraded_values(model: ModelType, values: Values, declared: Mapping[Any, Any], docid: str) -> Clear:
    """The clear values after the steps, checked against ``model`` (and the hashed
    ones against its declarations); MigrationFailed names paths, never values."""
    hidden = {name for name, value in values.values.items() if isinstance(value, Hidden)}
    clear = {name: value for name, value in values.values.items() if name not in hidden}
    try:
        model.validate(clear, kept=frozenset(hidden))
    except ValidationFailed as exc:
        where = ", ".join(sorted({v.path or "/" for v in exc.violations}))
        raise MigrationFailed(
            docid, f"the upgraded document does not match version {model.version} at {where}"
        ) from None
    origin = values.origin
    wrong = [n for n in hidden if n not in model.properties or model.properties[n].kind is not declared[origin[n]].kind]
    if wrong:
        raise MigrationFailed(docid, f"hashed properties {sorted(wrong)} have no place in version {model.version}")
    return clear
