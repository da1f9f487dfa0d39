"""Replication conflicts: the merge rules (pure but for the keys).

When two CouchDB nodes (or data centres) accept writes to one document before they
replicate, both revisions survive as *leaves* and CouchDB picks one as the winner,
listing the others in ``_conflicts``. It never merges them; ``merge`` does, following
the type's ``conflict`` policy from the models file.

``conflict: latest`` (the default)
    The whole leaf with the greatest ``meta.updated_at`` wins; equal times are broken by
    revision (higher generation, then the greater revision hash — CouchDB's own order).
    A write is always stamped later than what it overwrote (``envelope.later``).

``conflict: merge``
    Property by property. Each write records, in ``meta.changed``, the time each property
    last changed (set, changed or removed); properties the write left alone keep their
    time (``bookkeeping``). A property is taken from the leaf with the latest time for it
    (ties: revision as above), including its absence when that leaf removed it. Hence
    edits of different properties on different nodes are all kept. Leaves written before
    the type tracked changes count their present properties as changed at their
    ``updated_at``.

    ``merge: set`` (arrays): the union of every leaf's items (compared as JSON values), in
    the order of the leaf the rule above would pick, then the items only other leaves
    hold, in their order (leaves by time, then revision). A union keeps an item one node
    removed while another node's leaf still holds it.

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
from ..envelope import UNSIGNED, properties, rev_key
from ..models import ConflictPolicy, MergeKind, ModelType
from ..protection import IntegrityViolation, Keyring, KeyUnavailable
from .bookkeeping import changed_times, meta_of, time_of


class Unresolvable(Exception):
    """A conflict the rules do not decide; the message says why (never a value)."""


def _body(doc: dict) -> dict:
    """What a leaf says: everything but the revision fields and the signature."""
    return {k: v for k, v in doc.items() if k not in UNSIGNED}


def _latest(leaves: list[dict]) -> dict:
    return max(leaves, key=lambda d: (str(meta_of(d).get("updated_at") or ""), rev_key(d["_rev"])))


def merge(model: ModelType, leaves: list[dict], keys: Keyring) -> dict:
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


def _check_immutables(model: ModelType, leaves: list[dict], keys: Keyring) -> None:
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


def _merged(model: ModelType, leaves: list[dict], latest: dict, keys: Keyring) -> dict:
    docid = latest["_id"]
    names = set()
    for leaf in leaves:
        names |= set(properties(leaf)) | set(changed_times(leaf))
    props: dict[str, Any] = {}
    changed: dict[str, str] = {}
    counters: dict[str, dict] = {}
    for name in sorted(names):
        prop = model.properties.get(name)
        ranked = sorted(leaves, key=lambda leaf: (time_of(leaf, name), rev_key(leaf["_rev"])), reverse=True)
        top = ranked[0]
        if time_of(top, name):
            changed[name] = time_of(top, name)
        kind = prop.merge if prop is not None else None
        if kind is MergeKind.SET:
            holders = [leaf for leaf in ranked if name in leaf]
            if holders:
                props[name] = _union(model, keys, docid, name, holders)
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
    return {"_id": docid, "type": latest["type"], "meta": dict(sorted(meta.items())), **props}


def _check_value(model: ModelType, name: str, value: Any) -> None:
    if name in model.properties:
        violations = model.check_value(name, value)
        if violations:
            raise Unresolvable(
                f"the merged value of {name!r} breaks its schema: " + "; ".join(v.message for v in violations)
            )


def _union(model: ModelType, keys: Keyring, docid: str, name: str, holders: list[dict]) -> Any:
    prop = model.properties[name]
    slot = model.slot(name, docid)

    def clear(leaf: dict) -> list:
        try:
            value = prop.kind.reveal(keys, slot, leaf[name])
        except (IntegrityViolation, KeyUnavailable) as exc:
            raise Unresolvable(f"set {name!r} of revision {leaf['_rev']} cannot be read: {exc}") from None
        if not isinstance(value, list):
            raise Unresolvable(f"set {name!r} of revision {leaf['_rev']} is not an array")
        return value

    seen: set[bytes] = set()
    union: list = []
    for leaf in holders:
        for item in clear(leaf):
            key = canonical(item)
            if key not in seen:
                seen.add(key)
                union.append(item)
    if union == clear(holders[0]):
        return holders[0][name]  # the stored form as it is (no new ciphertext)
    _check_value(model, name, union)
    return prop.kind.protect(keys, slot, union)


def _counter(leaves: list[dict], name: str) -> tuple[dict, Any]:
    """The merged ``meta.counters`` record of ``name`` and the value it gives."""
    bases: list = []
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
