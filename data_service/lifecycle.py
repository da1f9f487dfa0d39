"""The document lifecycle (pure: no I/O). Every document the service stores is made here.

From a model, the current stored document (or none) and the caller's clear values,
``Lifecycle`` produces the next signed stored document. Every write takes the same
steps, in this order:

1. validate the caller's values (``check_body``/``check_patch`` run before the store
   hashes bcrypt values; a patch is validated once applied);
2. compare the new clear values with the current ones: an unchanged value keeps its
   stored form (no new ciphertext, no new hash); ``immutable`` ones must not change;
3. protect what changed (``protection.kinds``); bcrypt values arrive already hashed
   (``hashed``): the store runs bcrypt in its thread pool, never here;
4. the envelope: id, type tag, ``meta`` times (``envelope``);
5. merge bookkeeping for ``conflict: merge`` types (``conflicts.bookkeeping``);
6. the signature (``protection.keyring``), for the revision generation the write
   creates: one more than the revision it is written over (1 for a new document, one
   more than the tombstone for an id deleted before). A read checks it against
   ``_rev``, so an older body written over a newer revision fails.

The store (``store``), the reconciler (``conflicts``), ``reencrypt`` (``maintenance``)
and the installer's seeds are I/O shells around it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import envelope, idempotency
from .canonical import canonical
from .conflicts import rules
from .conflicts.bookkeeping import stamp
from .envelope import generation, rev_key, strip
from .models import ModelType, ValidationFailed, Violation, check_reserved, pointer
from .protection import IntegrityViolation, Keyring

MISSING: Any = object()


@dataclass(frozen=True)
class Lifecycle:
    keys: Keyring
    writer: str  # this process in counters' bookkeeping (``bookkeeping.new_writer_id``)

    # -- reading ------------------------------------------------------------------

    def verify(self, doc: dict) -> None:
        """IntegrityViolation unless ``doc`` is as the service signed it, at the revision
        it was signed for (KeyUnavailable: signed with a key this keyring lacks)."""
        if doc.get(envelope.UNREADABLE):
            raise IntegrityViolation(doc["_id"], "the stored document cannot be parsed (nested too deeply)")
        self.keys.verify(doc)

    def clear(self, model: ModelType, doc: dict) -> dict:
        """The readable properties of ``doc`` in clear."""
        return {
            name: model.properties[name].kind.reveal(self.keys, model.slot(name, doc["_id"]), value)
            for name, value in envelope.properties(doc).items()
            if name in model.properties and model.properties[name].readable
        }

    def representation(self, model: ModelType, doc: dict) -> dict:
        """What callers see of a verified stored document."""
        return envelope.representation(model, doc, self.clear(model, doc))

    def lookup_values(self, model: ModelType, name: str, value: Any) -> list:
        """The stored forms ``value`` may have in an index (one per enabled key version)."""
        return model.properties[name].kind.lookup_values(self.keys, model.slot(name, ""), value)

    # -- writing ------------------------------------------------------------------

    @staticmethod
    def check_body(model: ModelType, body: Any) -> None:
        """A create/replace body, before its bcrypt values are hashed."""
        if isinstance(body, dict):
            check_reserved(body)
        model.validate(body)

    @staticmethod
    def check_patch(model: ModelType, patch: Any) -> None:
        """What can be checked of a merge patch before it is applied."""
        if not isinstance(patch, dict):
            raise ValidationFailed([Violation("", "a merge patch for a document must be an object")])
        check_reserved(patch)
        wrong = [
            v
            for name, value in patch.items()
            if value is not None and name in model.properties and model.properties[name].kind.slow
            for v in model.check_value(name, value)
        ]
        if wrong:
            raise ValidationFailed(wrong)

    @staticmethod
    def slow_values(model: ModelType, values: dict) -> dict[str, Any]:
        """The values the store must protect in its thread pool (bcrypt) and pass as ``hashed``."""
        return {
            name: value
            for name, value in values.items()
            if value is not None and name in model.properties and model.properties[name].kind.slow
        }

    def create(
        self,
        model: ModelType,
        docid: str,
        body: dict,
        hashed: Mapping[str, str],
        at: str,
        tombstone: str | None = None,
    ) -> dict:
        """A new document (``body`` checked by ``check_body``). ``tombstone``: the
        revision of a deleted document with this id, whose branch CouchDB continues."""
        stored, _ = self._protected(model, docid, None, body, hashed)
        doc = envelope.new(model, docid, stored, at)
        return self._signed(stamp(model, None, doc, set(stored), self.writer), tombstone)

    def replace(self, model: ModelType, current: dict, body: dict, hashed: Mapping[str, str], at: str) -> dict:
        """``current`` with exactly the properties of ``body`` (checked by ``check_body``)."""
        stored, changed = self._protected(model, current["_id"], current, body, hashed)
        return self._over(model, current, stored, changed, at)

    def patch(self, model: ModelType, current: dict, patch: dict, hashed: Mapping[str, str], at: str) -> dict:
        """``current`` with an RFC 7396 merge patch applied to its clear values (checked by
        ``check_patch``). Hashed values the patch does not name are kept as stored."""
        hidden = {name for name, prop in model.properties.items() if not prop.readable}
        merged = envelope.merge_patch(self.clear(model, current), {k: v for k, v in patch.items() if k not in hidden})
        secrets = {k: v for k, v in patch.items() if k in hidden and v is not None}
        kept = {
            name: value for name, value in envelope.properties(current).items() if name in hidden and name not in patch
        }
        model.validate({**merged, **secrets}, kept=frozenset(kept))
        stored, changed = self._protected(model, current["_id"], current, {**merged, **secrets}, hashed, kept)
        return self._over(model, current, {**stored, **kept}, changed, at)

    def soft_delete(self, model: ModelType, current: dict, at: str) -> dict:
        return self._signed(stamp(model, current, envelope.soft_deleted(current, at), set(), self.writer))

    def reconciled(self, model: ModelType, leaves: list[dict]) -> tuple[dict, dict | None]:
        """A conflict's verified live ``leaves`` merged by the type's policy: (the leaf to
        write on — the highest revision — and the signed merge to write on it, or None when
        that leaf already is the merge). Raises ``rules.Unresolvable``."""
        merged = rules.merge(model, leaves, self.keys)
        base = max(leaves, key=lambda leaf: rev_key(leaf["_rev"]))
        if merged == {k: v for k, v in base.items() if k not in envelope.UNSIGNED}:
            return base, None
        return base, self._signed({**merged, "_rev": base["_rev"]})

    def reprotected(self, model: ModelType, doc: dict) -> tuple[dict | None, int]:
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
        return self._signed(changed), stale

    def resigned(self, doc: dict) -> dict | None:
        """A document with nothing protected (an Idempotency-Key record) signed under
        the primary key, or None if it is."""
        return None if self.keys.is_current(doc) else self._signed(doc)

    def restored(self, parent: dict, rev: str) -> dict:
        """``parent``'s content, unchanged (``meta`` too), signed to be written over
        ``rev``: undoing a write that lost a race (``store.writes``)."""
        return self._signed({**strip(parent), "_rev": rev})

    def claim(
        self,
        model: ModelType,
        key: str,
        docid: str,
        body: Any,
        at: dt.datetime,
        ttl: float,
        current: dict | None,
        tombstone: str | None = None,
    ) -> dict:
        """A signed Idempotency-Key record claiming ``key`` for ``docid`` (over an expired
        ``current`` one, or continuing the ``tombstone`` of a deleted one)."""
        record = idempotency.new_record(model.name, key, docid, body, at, ttl)
        return self._signed({**record, "_rev": current["_rev"]} if current else record, tombstone)

    # -- the steps ----------------------------------------------------------------

    def _protected(
        self,
        model: ModelType,
        docid: str,
        current: dict | None,
        values: dict,
        hashed: Mapping[str, str],
        kept: Mapping[str, Any] = {},
    ) -> tuple[dict, set[str]]:
        """Stored forms of ``values`` and the names that changed (set, changed or removed)
        compared with ``current``: an unchanged value keeps its stored form. ``kept``
        names stored values the write leaves as they are."""
        old = envelope.properties(current) if current else {}
        old_clear = self.clear(model, current) if current else {}
        stored, changed, wrong = {}, set(), []
        for name, value in values.items():
            prop, slot = model.properties[name], model.slot(name, docid)
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

    def _over(self, model: ModelType, current: dict, stored: dict, changed: set[str], at: str) -> dict:
        doc = envelope.replaced(model, current, stored, at)
        return self._signed(stamp(model, current, doc, changed, self.writer))

    def _signed(self, doc: dict, tombstone: str | None = None) -> dict:
        """``doc`` signed for the generation its write creates: over its ``_rev``, or
        over ``tombstone`` (a create on a deleted id), or 1."""
        over = tombstone if tombstone is not None else doc.get("_rev")
        return self.keys.sign(doc, (generation(over) or 0) + 1)
