"""What writes record for merges later (pure): ``meta.changed``, ``meta.counters`` and
``meta.sets``.

Only ``conflict: merge`` types keep them. ``meta.changed`` maps each property to the
time it last changed (set, changed or removed). ``meta.counters.<prop>`` holds
``base`` (the value at creation) and, per writer — one sidecar process, see
``new_writer_id`` — the sums of its increments (``inc``) and decrements (``dec``).
``meta.sets.<prop>`` holds the dots and causal context of a ``merge: set`` array
(``sets``). ``lifecycle`` calls ``with_bookkeeping`` on every write of a merge type and
``migrated`` when it upgrades a document of an older version; ``rules`` reads them.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from ..canonical import integral
from ..envelope import properties
from ..models import ConflictPolicy, MergeKind, ModelType
from ..vocabulary import JSONObject, Stored
from . import sets

BOOKKEEPING = ("changed", "counters", "sets")
Arrays = dict[str, tuple[list[Any] | None, list[Any] | None]]  # set property: (old clear array, new clear array)


def new_writer_id() -> str:
    """A random id for one sidecar process: its counter increments are kept under it."""
    return secrets.token_hex(6)


def meta_of(doc: Stored) -> JSONObject:
    meta = doc.get("meta")
    return meta if isinstance(meta, dict) else {}


def changed_times(doc: Stored) -> JSONObject:
    changed = meta_of(doc).get("changed")
    return changed if isinstance(changed, dict) else {}


def time_of(doc: Stored, name: str) -> str:
    """When ``name`` last changed in ``doc`` ("" for never)."""
    meta = meta_of(doc)
    if isinstance(meta.get("changed"), dict):
        return str(meta["changed"].get(name) or "")
    return str(meta.get("updated_at") or "") if name in doc else ""  # written before tracking


def with_bookkeeping(
    model: ModelType, current: Stored | None, doc: Stored, changed: set[str], writer: str, arrays: Arrays | None = None
) -> Stored:
    """``doc`` (about to be signed and written over ``current``, or created when None)
    with its bookkeeping brought up to date; ``changed`` names the properties this write
    set, changed or removed; ``arrays`` the clear ``merge: set`` arrays before and after."""
    if model.conflict_policy is not ConflictPolicy.MERGE:
        return doc
    meta = dict(doc["meta"])
    at = meta["updated_at"]
    new = properties(doc)
    counted = [name for name, prop in model.properties.items() if prop.merge is MergeKind.COUNTER]
    if current is None:
        times = {name: at for name in new}
        counters = {name: {"base": integral(new.get(name, 0))} for name in counted}
    else:
        old = properties(current)
        times = {name: when for name in set(old) | set(changed_times(current)) if (when := time_of(current, name))}
        times.update({name: at for name in changed})
        counters = copy.deepcopy(meta_of(current).get("counters") or {})
        for name in counted:
            before, after = old.get(name, 0), new.get(name, 0)
            record = counters.setdefault(name, {"base": integral(before)})
            if delta := after - before:
                sums = record.setdefault("inc" if delta > 0 else "dec", {})
                sums[writer] = integral(sums.get(writer, 0) + abs(delta))
    meta["changed"] = dict(sorted(times.items()))
    if counted:
        meta["counters"] = counters
    if records := _sets(current, doc, arrays or {}, writer):
        meta["sets"] = records
    return {**doc, "meta": meta}


def _sets(current: Stored | None, doc: Stored, arrays: Arrays, writer: str) -> JSONObject:
    records = {}
    for name, (old, new) in sorted(arrays.items()):
        record = sets.record_of(meta_of(current), name, current.get(name), old) if current else None
        written = sets.written(record, old, new, writer, current.get("_rev") if current else None)
        if not written.empty:
            records[name] = sets.as_meta(written, doc.get(name))
    return records


def migrated(model: ModelType, old: Stored, doc: Stored, origin: dict[str, str | None], unchanged: set[str]) -> Stored:
    """``doc``, upgraded from ``old`` (an older version), with bookkeeping that follows
    the properties: a property keeps the change time of the one it came from
    (``origin``; made by the migration: the creation time, so any real edit is later),
    and its counter or set record when the migration left its value ``unchanged``.
    The other records are dropped: such values merge like ones written before records
    were kept."""
    meta = {k: v for k, v in meta_of(doc).items() if k not in BOOKKEEPING}
    if model.conflict_policy is not ConflictPolicy.MERGE:
        return {**doc, "meta": meta}
    created = str(meta.get("created_at") or "")
    new = properties(doc)
    meta["changed"] = dict(
        sorted((name, (time_of(old, source) if (source := origin.get(name)) else "") or created) for name in new)
    )
    records = {part: meta_of(old).get(part) or {} for part in ("counters", "sets")}
    for name in sorted(unchanged & set(new)):
        source = origin[name] or ""
        counter = records["counters"].get(source)
        if isinstance(counter, dict):
            meta.setdefault("counters", {})[name] = counter
        record = records["sets"].get(source)
        if isinstance(record, dict) and record.get("digest") == sets.stored_digest(old.get(source)):
            meta.setdefault("sets", {})[name] = {**record, "digest": sets.stored_digest(new[name])}
    return {**doc, "meta": meta}


def redigested(old: JSONObject, new: JSONObject) -> JSONObject:
    """``new``, the stored values of ``old`` protected anew (re-keyed), with its set
    records describing the new stored forms — those that described the old ones."""
    records = meta_of(old).get("sets")
    if not isinstance(records, dict):
        return new
    renewed = {
        name: {**record, "digest": sets.stored_digest(new.get(name))}
        if isinstance(record, dict) and record.get("digest") == sets.stored_digest(old.get(name))
        else record
        for name, record in records.items()
    }
    return {**new, "meta": {**meta_of(new), "sets": renewed}}
