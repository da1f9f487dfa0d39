"""Replication conflicts: the merge rules (pure but for the keys).

When two CouchDB nodes (or data centres) accept writes to one document before they
replicate, both revisions survive as *leaves* and CouchDB picks one as the winner,
listing the others in ``_conflicts``. It never merges them; ``merge`` does, following
the type's ``conflict`` policy from the models file.

``conflict: latest`` (the default)
    The whole leaf with the greatest ``meta.updated_at`` wins; equal times are broken by
    revision (higher generation, then the greater revision hash — CouchDB's own order).
    A write is always timestamped later than what it overwrote (``envelope.later``).

``conflict: merge``
    Property by property. Each write records, in ``meta.changed``, the time each property
    last changed (set, changed or removed); properties the write left alone keep their
    time (``bookkeeping``). A property is taken from the leaf with the latest time for it
    (ties: revision as above), including its absence when that leaf removed it. Hence
    edits of different properties on different nodes are all kept. Leaves written before
    the type tracked changes count their present properties as changed at their
    ``updated_at``.

    ``merge: set`` (arrays): an observed-remove set (``sets``): an item is kept when a
    write that added it survives — one every leaf either holds or has not seen — so a
    removal concurrent with any other edit stays removed and an item added again
    concurrently with its removal stays. Items in the order of the leaf the rule above
    would pick, then the items only other leaves hold, in their order (leaves by time,
    then revision). Arrays written before sets kept their dots merge by union. With no
    item left the property is an empty array, or absent when the leaf that changed it
    last removed it.

    ``merge: counter`` (numbers, protection plain): ``meta.counters.<prop>`` holds
    ``base`` (the value at creation) and, per writer (a sidecar process), the sums of its
    increments and decrements; value = base + Σinc − Σdec, and the merge takes each
    writer's maximum, so no increment is lost or counted twice.

``immutable: true``
    Set once, never changed: leaves that disagree make the conflict unresolvable.

The merge depends only on the leaves (their bodies and revisions), never on which one
CouchDB shows as winner or on the clock, so two sidecars reconciling one document
compute the same document.
"""

from __future__ import annotations

from typing import Any

from ..canonical import canonical, integral
from ..envelope import UNSIGNED, properties
from ..models import ConflictPolicy, MergeKind, ModelType
from ..protection import IntegrityViolation, Keyring, KeyUnavailable
from ..revisions import rev_key
from ..vocabulary import JSONObject, Stored
from . import sets
from .bookkeeping import changed_times, meta_of, time_of


class Unresolvable(Exception):
    """A conflict the rules do not decide; the message says why (never a value)."""


def _body(doc: Stored) -> Stored:
    """What a leaf says: everything but the revision fields and the signature."""
    return {k: v for k, v in doc.items() if k not in UNSIGNED}


def _latest(leaves: list[Stored]) -> Stored:
    return max(leaves, key=lambda d: (str(meta_of(d).get("updated_at") or ""), rev_key(d["_rev"])))


def base(model: ModelType, leaves: list[Stored]) -> Stored:
    """The leaf a merge of ``leaves`` is written on: for ``latest`` the one whose content
    it takes (so a merge and a withdrawal of that leaf race each other, never pass:
    ``docs/consistency.md`` §2); for ``merge`` the highest revision."""
    if model.conflict_policy is ConflictPolicy.MERGE:
        return max(leaves, key=lambda d: rev_key(d["_rev"]))
    return _latest(leaves)


def merge(model: ModelType, leaves: list[Stored], keys: Keyring) -> Stored:
    """The merged document (``_id``, type, meta, properties; no ``_rev``, no signature)
    of verified, live ``leaves`` of ``model``. Raises Unresolvable."""
    leaves = sorted(leaves, key=lambda d: rev_key(d["_rev"]), reverse=True)
    _check_immutables(model, leaves, keys)
    latest = _latest(leaves)
    body = _merged(model, leaves, latest, keys) if model.conflict_policy is ConflictPolicy.MERGE else _body(latest)
    for name, prop in model.properties.items():  # set once on one node: every leaf takes it
        holders = [leaf for leaf in leaves if name in leaf]
        if prop.immutable and name not in body and holders:
            body[name] = holders[0][name]
            if isinstance(meta_of(body).get("changed"), dict) and time_of(holders[0], name):
                body["meta"] = {**body["meta"], "changed": {**body["meta"]["changed"], name: time_of(holders[0], name)}}
    return body


def _check_immutables(model: ModelType, leaves: list[Stored], keys: Keyring) -> None:
    for name, prop in model.properties.items():
        if not prop.immutable:
            continue
        seen: dict[bytes, list[str]] = {}
        for leaf in leaves:
            if name not in leaf:
                continue
            try:
                value = (
                    prop.kind.reveal(keys, model.slot(name, leaf["_id"]), leaf[name]) if prop.readable else leaf[name]
                )
            except (IntegrityViolation, KeyUnavailable) as exc:
                raise Unresolvable(
                    f"immutable property {name!r} of revision {leaf['_rev']} cannot be read: {exc}"
                ) from None
            seen.setdefault(canonical(value), []).append(leaf["_rev"])
        if len(seen) > 1:
            groups = " vs ".join("+".join(revs) for revs in seen.values())
            raise Unresolvable(f"immutable property {name!r} differs between revisions {groups}")


def _merged(model: ModelType, leaves: list[Stored], latest: Stored, keys: Keyring) -> Stored:
    docid = latest["_id"]
    names = set()
    for leaf in leaves:
        names |= set(properties(leaf)) | set(changed_times(leaf))
    props: dict[str, Any] = {}
    changed: dict[str, str] = {}
    counters: dict[str, JSONObject] = {}
    records: dict[str, JSONObject] = {}
    for name in sorted(names):
        prop = model.properties.get(name)
        ranked = sorted(leaves, key=lambda leaf: (time_of(leaf, name), rev_key(leaf["_rev"])), reverse=True)
        top = ranked[0]
        if time_of(top, name):
            changed[name] = time_of(top, name)
        kind = prop.merge if prop is not None else None
        if kind is MergeKind.SET and not (record := _set(model, keys, name, ranked, props)).empty:
            records[name] = sets.as_meta(record, props.get(name))
        elif kind is MergeKind.COUNTER:
            counters[name], value = _counter(leaves, name)
            if name in top:
                props[name] = value
                if value != top[name]:
                    _check_value(model, name, value)
        elif name in top:
            props[name] = top[name]
    for name, prop in model.properties.items():  # counters never set still keep their record
        if (
            prop.merge is MergeKind.COUNTER
            and name not in counters
            and any(name in (meta_of(leaf).get("counters") or {}) for leaf in leaves)
        ):
            counters[name], _ = _counter(leaves, name)
    meta = dict(meta_of(latest))
    created = [str(meta_of(leaf)["created_at"]) for leaf in leaves if meta_of(leaf).get("created_at")]
    if created:
        meta["created_at"] = min(created)
    meta["changed"] = changed
    if counters:
        meta["counters"] = counters
    else:
        meta.pop("counters", None)
    if records:
        meta["sets"] = records
    else:
        meta.pop("sets", None)
    return {"_id": docid, "type": latest["type"], "meta": dict(sorted(meta.items())), **props}


def _check_value(model: ModelType, name: str, value: Any) -> None:
    if name in model.properties:
        violations = model.check_value(name, value)
        if violations:
            raise Unresolvable(
                f"the merged value of {name!r} breaks its schema: " + "; ".join(v.message for v in violations)
            )


def _set(model: ModelType, keys: Keyring, name: str, ranked: list[Stored], props: Stored) -> sets.Record:
    """Merge set ``name`` of the ``ranked`` leaves into ``props``; its merged record."""
    prop = model.properties[name]
    slot = model.slot(name, ranked[0]["_id"])

    def clear(leaf: Stored) -> list[Any] | None:
        if name not in leaf:
            return None
        try:
            value = prop.kind.reveal(keys, slot, leaf[name])
        except (IntegrityViolation, KeyUnavailable) as exc:
            raise Unresolvable(f"set {name!r} of revision {leaf['_rev']} cannot be read: {exc}") from None
        if not isinstance(value, list):
            raise Unresolvable(f"set {name!r} of revision {leaf['_rev']} is not an array")
        return value

    arrays = [clear(leaf) for leaf in ranked]
    entries = [
        (array, sets.record_of(meta_of(leaf), name, leaf.get(name), array))
        for leaf, array in zip(ranked, arrays, strict=True)
    ]
    try:
        items, record = sets.merged(entries)
    except sets.SetConflict as exc:
        raise Unresolvable(f"set {name!r}: {exc}") from None
    top = ranked[0]
    if items or name in top:
        if arrays[0] is not None and canonical(items) == canonical(arrays[0]):
            props[name] = top[name]  # the stored form as it is (no new ciphertext)
        else:
            _check_value(model, name, items)
            props[name] = prop.kind.protect(keys, slot, items)
    return record


def _counter(leaves: list[Stored], name: str) -> tuple[JSONObject, Any]:
    """The merged ``meta.counters`` record of ``name`` and the value it gives."""
    bases: list[Any] = []
    sums: dict[str, dict[str, Any]] = {"inc": {}, "dec": {}}
    for leaf in leaves:
        record = (meta_of(leaf).get("counters") or {}).get(name)
        if not isinstance(record, dict):  # written before the type kept counters
            record = {"base": leaf.get(name, 0)}
        bases.append(record.get("base", 0))
        for part, merged in sums.items():
            for writer, total in (record.get(part) or {}).items():
                merged[writer] = max(merged.get(writer, total), total)
    if any(base != bases[0] for base in bases):
        raise Unresolvable(f"counter {name!r}: the revisions disagree on its base value")
    value = integral(
        bases[0] + sum(sums["inc"][w] for w in sorted(sums["inc"])) - sum(sums["dec"][w] for w in sorted(sums["dec"]))
    )
    record = {"base": bases[0]}
    for part in ("inc", "dec"):
        if sums[part]:
            record[part] = dict(sorted(sums[part].items()))
    return record, value
