"""The document lifecycle (pure: no I/O). Every document the service stores is made here.

From a model, the current stored document (or none) and the caller's clear values,
``Lifecycle`` produces the next signed stored document. Every write takes the same
steps, in this order:

1. validate the caller's values (``check_body``/``check_patch`` run before the store
   hashes bcrypt values; a patch is validated once applied);
2. compare the new clear values (date-times in UTC ``Z`` form) with the current ones: an unchanged value keeps its
   stored form (no new ciphertext, no new hash); ``immutable`` ones must not change;
3. protect what changed (``protection.kinds``); bcrypt values arrive already hashed
   (``hashed``): the store runs bcrypt in its thread pool, never here;
4. the envelope: id, type tag, ``meta`` times (``envelope``);
5. merge bookkeeping for ``conflict: merge`` types (``conflicts.bookkeeping``): change
   times, counters, and the dots of ``merge: set`` arrays (``conflicts.sets``, from the
   clear arrays before and after);
6. the signature (``protection.keyring``), for the revision generation the write
   creates: one more than the revision it is written over (1 for a new document, one
   more than the tombstone for an id deleted before). A read checks it against
   ``_rev``, so an older body written over a newer revision fails.

A document of an older major version is read upgraded (``current``/``migrated``): it is
verified first, its values revealed under that version's declarations, the type's
migration steps applied to the clear values, the result validated against the current
version and protected and signed as it — what the next write stores over it, and what
``data-service migrate`` writes. Properties a newer *minor* version added (unknown here)
are kept as stored on every write, and so is that version's tag.

The store (``store``), the reconciler (``conflicts``), ``reencrypt`` and ``migrate``
(``maintenance``) and the installer's seeds are I/O shells around it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import envelope, idempotency
from ..canonical import canonical
from ..conflicts import bookkeeping, rules
from ..conflicts.bookkeeping import Arrays, with_bookkeeping
from ..envelope import Removed
from ..models import (
    DeletePolicy,
    MergeKind,
    ModelType,
    ValidationFailed,
    Violation,
    is_of,
    is_older,
    pointer,
)
from ..protection import IntegrityViolation, Keyring
from ..revisions import generation, parent
from ..vocabulary import Clear, JSONObject, Representation, Stored
from . import checks, documents, migration
from .ops import Op

MISSING: Any = object()


@dataclass(frozen=True)
class Made:
    """A document to write, signed, and what callers are shown of it once written (its
    representation, built from the clear values it was made from: nothing decrypted;
    empty for a delete, which shows nothing)."""

    doc: Stored
    shown: Representation = field(default_factory=dict)


@dataclass(frozen=True)
class Lifecycle:
    keys: Keyring
    writer: str  # this process in counters' bookkeeping (``bookkeeping.new_writer_id``)

    # -- reading ------------------------------------------------------------------

    def check_signature(self, doc: Stored) -> None:
        """IntegrityViolation unless ``doc`` is as the service signed it, at the revision
        it was signed for (KeyUnavailable: signed with a key this keyring lacks)."""
        if doc.get(envelope.UNREADABLE):
            raise IntegrityViolation(doc["_id"], "the stored document cannot be parsed (nested too deeply)")
        self.keys.check_signature(doc)

    def clear(self, model: ModelType, doc: Stored) -> Clear:
        """The readable properties of ``doc`` in clear."""
        return {
            name: model.properties[name].kind.reveal(self.keys, model.slot(name, doc["_id"]), value)
            for name, value in envelope.properties(doc).items()
            if name in model.properties and model.properties[name].readable
        }

    def open(self, model: ModelType, doc: Stored, *, deleted: bool = False) -> Stored | None:
        """The one way a stored document is read: verified *first* (IntegrityViolation,
        KeyUnavailable), then classified — ``model``'s current version (an older major
        upgraded: ``current``), or None when it is another type's, or soft-deleted
        (unless ``deleted``). A document whose type, version or deleted marker was changed
        in the database is therefore a violation, never a quiet None."""
        self.check_signature(doc)
        current = self.current(model, doc)
        if current is None or (envelope.is_deleted(current) and not deleted):
            return None
        return current

    def removed(self, leaf: Stored) -> Removed:
        """Why the service wrote the tombstone ``leaf`` (read with ``revs=true``), or
        IntegrityViolation: not signed by the service for its generation, or written
        somewhere else than on the revision it names (``meta.over``) — a deletion made
        outside the service, or a signed one moved onto another branch."""
        self.check_signature(leaf)
        meta: JSONObject = leaf["meta"] if isinstance(leaf.get("meta"), dict) else {}
        if not leaf.get("_deleted") or meta.get("removed") not in tuple(Removed):
            raise IntegrityViolation(leaf["_id"], f"revision {leaf.get('_rev')} is no tombstone of the service")
        if meta.get("over") != parent(leaf):
            raise IntegrityViolation(
                leaf["_id"],
                f"tombstone {leaf.get('_rev')} ({meta['removed']}) was signed for {meta.get('over')}, "
                f"written on {parent(leaf)}",
            )
        return Removed(meta["removed"])

    def open_record(self, type_name: str, key: str, doc: Stored) -> Stored:
        """An Idempotency-Key record, verified first: IntegrityViolation when it was
        edited, or is another key's (never trust its expiry or document id before)."""
        self.check_signature(doc)
        if not idempotency.is_record(doc) or doc.get("key") != idempotency.key_digest(type_name, key):
            raise IntegrityViolation(doc["_id"], "idempotency record of another key")
        return doc

    def current(self, model: ModelType, doc: Stored) -> Stored | None:
        """A verified stored ``doc`` as ``model``'s version: itself, or upgraded from an
        older major (``migrated``); None when it is no document of ``model``."""
        if is_of(model, doc):
            return doc
        return self.migrated(model, doc) if is_older(model, doc) else None

    def migrated(self, model: ModelType, doc: Stored) -> Stored:
        """``doc`` (verified, of an older major of ``model``) upgraded by the type's
        migrations (``migration.upgraded``), signed to be written over its revision.
        MigrationFailed when the result is not valid."""
        return self.signed(migration.upgraded(self.keys, model, doc))

    def representation(self, model: ModelType, doc: Stored) -> Representation:
        """What callers see of a verified stored document."""
        return documents.representation(model, doc, self.clear(model, doc))

    def lookup_values(self, model: ModelType, name: str, value: Any) -> list[Any]:
        """The stored forms ``value`` may have in an index (one per enabled key version)."""
        return model.properties[name].kind.lookup_values(self.keys, model.slot(name, ""), value)

    # -- writing ------------------------------------------------------------------

    check = staticmethod(checks.check)
    slow_values = staticmethod(checks.slow_values)

    def next(
        self, op: Op, model: ModelType, docid: str, current: Stored | None, values: Any, hashed: Mapping[str, str]
    ) -> Made:
        """The document ``op`` writes and what callers are shown of it, from the current
        stored document (for a create: None, or the tombstone of an id deleted before,
        whose branch CouchDB continues) and the values ``check`` passed. A delete is a
        soft delete or a signed tombstone, as the type's delete policy says."""
        at = envelope.now()
        if op is Op.CREATE:
            return self.create(model, docid, values, hashed, at, current["_rev"] if current else None)
        assert current is not None
        if op is Op.REPLACE:
            return self.replace(model, current, values, hashed, at)
        if op is Op.PATCH:
            return self.patch(model, current, values, hashed, at)
        if model.delete_policy is DeletePolicy.SOFT:
            return Made(self.soft_delete(model, current, at))
        return Made(self.tombstone(current, Removed.DELETE, at))

    def create(
        self,
        model: ModelType,
        docid: str,
        body: Clear,
        hashed: Mapping[str, str],
        at: str,
        tombstone: str | None = None,
    ) -> Made:
        """A new document. ``tombstone``: the revision of a deleted document with this
        id, whose branch CouchDB continues."""
        stored, _ = self._protected(model, docid, None, body, hashed)
        doc = documents.new(model, docid, stored, at)
        signed = self.signed(
            with_bookkeeping(model, None, doc, set(stored), self.writer, self._arrays(model, None, body)), tombstone
        )
        return Made(signed, self._shown(model, signed, body))

    def replace(self, model: ModelType, current: Stored, body: Clear, hashed: Mapping[str, str], at: str) -> Made:
        """``current`` with exactly the properties of ``body``, but that hidden properties
        the body omits are kept and null ones removed; properties of a newer minor
        version, unknown here, are kept as stored."""
        hidden = model.hidden
        kept = {
            name: value for name, value in envelope.properties(current).items() if name in hidden and name not in body
        }
        values = {k: v for k, v in body.items() if v is not None or k not in hidden}
        missing = [Violation(pointer([n]), "is required") for n in model.required if n not in values and n not in kept]
        if missing:  # a required hidden property neither sent nor stored, or set to null
            raise ValidationFailed(missing)
        kept.update(self._unknown(model, current))
        stored, changed = self._protected(model, current["_id"], current, values, hashed, kept)
        return self._over(model, current, {**stored, **kept}, changed, at, values)

    def patch(self, model: ModelType, current: Stored, patch: JSONObject, hashed: Mapping[str, str], at: str) -> Made:
        """``current`` with an RFC 7396 merge patch applied to its clear values. Hashed
        values the patch does not name are kept as stored."""
        hidden = model.hidden
        merged = documents.merge_patch(self.clear(model, current), {k: v for k, v in patch.items() if k not in hidden})
        secrets = {k: v for k, v in patch.items() if k in hidden and v is not None}
        kept = {
            name: value for name, value in envelope.properties(current).items() if name in hidden and name not in patch
        }
        model.validate({**merged, **secrets}, kept=frozenset(kept))
        kept.update(self._unknown(model, current))
        stored, changed = self._protected(model, current["_id"], current, {**merged, **secrets}, hashed, kept)
        return self._over(model, current, {**stored, **kept}, changed, at, merged)

    def soft_delete(self, model: ModelType, current: Stored, at: str) -> Stored:
        arrays = self._arrays(model, current, self.clear(model, current))
        return self.signed(
            with_bookkeeping(model, current, documents.soft_deleted(current, at), set(), self.writer, arrays)
        )

    def tombstone(self, doc: Stored, removed: Removed, at: str | None = None) -> Stored:
        """A signed tombstone to write on ``doc``'s revision: why (``removed``), when, and
        the revision it is written on (``meta.over``), so it cannot be moved elsewhere."""
        meta = {"deleted_at": documents.later(doc, at or envelope.now()), "removed": removed.value, "over": doc["_rev"]}
        return self.signed(
            {"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True, "type": doc.get("type"), "meta": meta}
        )

    def reconciled(self, model: ModelType, leaves: list[Stored]) -> tuple[Stored, Stored | None]:
        """A conflict's verified live ``leaves`` merged by the type's policy, leaves of an
        older version upgraded first: (the leaf to write on — ``rules.base`` — and the
        signed merge to write on it, or None when that leaf already is the merge).
        Raises ``rules.Unresolvable`` or MigrationFailed."""
        upgraded = {leaf["_rev"]: self.current(model, leaf) or leaf for leaf in leaves}
        merged = rules.merge(model, list(upgraded.values()), self.keys)
        base = next(leaf for leaf in leaves if leaf["_rev"] == rules.base(model, list(upgraded.values()))["_rev"])
        if merged == {k: v for k, v in base.items() if k not in envelope.UNSIGNED}:
            return base, None
        return base, self.signed({**merged, "_rev": base["_rev"]})

    def rewritten(self, doc: Stored) -> Stored:
        """``doc``'s content signed to be written on it: one generation up, nothing else
        changed (the reconciler lifts a document above a tombstone with it)."""
        return self.signed({k: v for k, v in doc.items() if k not in envelope.READ_ADDED})

    def reprotected(self, model: ModelType, doc: Stored) -> tuple[Stored | None, int]:
        """``doc`` with readable protected values re-protected under the primary keys (in
        the current format) and signed again (version 2), or None if it is current. Also
        returns how many hashed values stay under an old key (a hash cannot be re-keyed
        without its plaintext)."""
        changed, stale = dict(doc), 0
        for name, value in envelope.properties(doc).items():
            prop = model.properties.get(name)
            if prop is None or prop.kind.is_current(self.keys, slot := model.slot(name, doc["_id"]), value):
                continue
            if prop.readable:
                changed[name] = prop.kind.protect(self.keys, slot, prop.kind.reveal(self.keys, slot, value))
            else:
                stale += 1
        if changed == doc and self.keys.is_current(doc):
            return None, stale
        return self.signed(bookkeeping.redigested(doc, changed)), stale

    def resigned(self, doc: Stored) -> Stored | None:
        """A document with nothing protected (an Idempotency-Key record) signed under
        the primary key, or None if it is."""
        return None if self.keys.is_current(doc) else self.signed(doc)

    def claim(
        self,
        model: ModelType,
        key: str,
        docid: str,
        body: Any,
        at: dt.datetime,
        ttl: float,
        current: Stored | None,
        tombstone: str | None = None,
    ) -> Stored:
        """A signed Idempotency-Key record claiming ``key`` for ``docid`` (over an expired
        ``current`` one, or continuing the ``tombstone`` of a deleted one)."""
        record = idempotency.new_record(model.name, key, docid, body, at, ttl)
        return self.signed({**record, "_rev": current["_rev"]} if current else record, tombstone)

    # -- the steps ----------------------------------------------------------------

    def _protected(
        self,
        model: ModelType,
        docid: str,
        current: Stored | None,
        values: Clear,
        hashed: Mapping[str, str],
        kept: Mapping[str, Any] = {},
    ) -> tuple[Stored, set[str]]:
        """Stored forms of ``values`` and the names that changed (set, changed or removed)
        compared with ``current``: an unchanged value keeps its stored form. ``kept``
        names stored values the write leaves as they are."""
        old = envelope.properties(current) if current else {}
        old_clear = self.clear(model, current) if current else {}
        stored, changed, wrong = {}, set(), []
        for name, value in values.items():
            prop, slot = model.properties[name], model.slot(name, docid)
            value = model.stored_value(name, value)
            if name in hashed:
                same, form = False, hashed[name]
            elif name in old:
                same = (
                    canonical(old_clear[name]) == canonical(value)
                    if prop.readable
                    else prop.kind.holds(self.keys, slot, old[name], value)
                )
                form = old[name] if same else MISSING
            else:
                same, form = False, MISSING
            if prop.immutable and name in old and not same:
                wrong.append(Violation(pointer([name]), "is immutable: it cannot be changed once set"))
            stored[name] = prop.kind.protect(self.keys, slot, value) if form is MISSING else form
            if not same:
                changed.add(name)
        for name in set(old) - set(values) - set(kept):
            if name in model.properties and model.properties[name].immutable:
                wrong.append(Violation(pointer([name]), "is immutable: it cannot be removed once set"))
            changed.add(name)
        if wrong:
            raise ValidationFailed(wrong)
        return stored, changed

    def _over(
        self, model: ModelType, current: Stored, stored: Stored, changed: set[str], at: str, values: Clear
    ) -> Made:
        doc = documents.replaced(model, current, stored, at)
        signed = self.signed(
            with_bookkeeping(model, current, doc, changed, self.writer, self._arrays(model, current, values))
        )
        return Made(signed, self._shown(model, signed, values))

    @staticmethod
    def _shown(model: ModelType, doc: Stored, values: Mapping[str, Any]) -> Representation:
        """What callers see of ``doc`` just written from the clear ``values`` (no decrypt)."""
        return documents.representation(model, doc, {name: model.stored_value(name, v) for name, v in values.items()})

    def _arrays(self, model: ModelType, current: Stored | None, values: Mapping[str, Any]) -> Arrays:
        """The clear ``merge: set`` arrays of ``current`` and of the new ``values``."""
        names = [name for name, prop in model.properties.items() if prop.merge is MergeKind.SET]
        old = self.clear(model, {k: v for k, v in current.items() if k in names or k == "_id"}) if current else {}
        return {name: (old.get(name), values.get(name)) for name in names}

    @staticmethod
    def _unknown(model: ModelType, current: Stored) -> Stored:
        """Stored properties ``model`` does not declare: a newer minor version's."""
        return {name: value for name, value in envelope.properties(current).items() if name not in model.properties}

    def signed(self, doc: Stored, tombstone: str | None = None) -> Stored:
        """``doc`` signed for the generation its write creates: over its ``_rev``, or
        over ``tombstone`` (a create on a deleted id), or 1."""
        over = tombstone if tombstone is not None else doc.get("_rev")
        return self.keys.sign(doc, (generation(over) or 0) + 1)
