"""What writes record for merges later (pure): ``meta.changed`` and ``meta.counters``.

Only ``conflict: merge`` types keep them. ``meta.changed`` maps each property to the
time it last changed (set, changed or removed). ``meta.counters.<prop>`` holds
``base`` (the value at creation) and, per writer — one sidecar process, see
``new_writer_id`` — the sums of its increments (``inc``) and decrements (``dec``).
``lifecycle`` calls ``stamp`` on every write of a merge type; ``rules`` reads them.
"""

from __future__ import annotations

import copy
import secrets

from ..canonical import integral
from ..envelope import properties
from ..models import ConflictPolicy, MergeKind, ModelType


def new_writer_id() -> str:
    """A random id for one sidecar process: its counter increments are kept under it."""
    return secrets.token_hex(6)


def meta_of(doc: dict) -> dict:
    meta = doc.get("meta")
    return meta if isinstance(meta, dict) else {}


def changed_times(doc: dict) -> dict:
    changed = meta_of(doc).get("changed")
    return changed if isinstance(changed, dict) else {}


def time_of(doc: dict, name: str) -> str:
    """When ``name`` last changed in ``doc`` ("" for never)."""
    meta = meta_of(doc)
    if isinstance(meta.get("changed"), dict):
        return str(meta["changed"].get(name) or "")
    return str(meta.get("updated_at") or "") if name in doc else ""  # written before tracking


def stamp(model: ModelType, current: dict | None, doc: dict, changed: set[str], writer: str) -> dict:
    """``doc`` (about to be signed and written over ``current``, or created when None)
    with its bookkeeping brought up to date; ``changed`` names the properties this write
    set, changed or removed."""
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
    return {**doc, "meta": meta}
