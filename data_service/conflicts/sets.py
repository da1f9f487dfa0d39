"""``merge: set`` arrays as observed-remove sets without tombstones (pure).

A plain union brings back an item one node removed while another node edited anything
else. So each item carries the writes that added it, and a removal removes exactly
what it observed. ``meta.sets.<prop>`` holds, beside the array (never the item values:
the array may be encrypted)::

    {"dots": [[["w1", 3]], [["w1", 1], ["w2", 2]]],   # per item, in the array's order
     "context": {"w1": 3, "w2": 2},                    # per writer, the last dot seen
     "digest": "<of the stored array>"}

A *dot* ``[writer, n]`` names the n-th addition to this set by one writer (a sidecar
process, ``bookkeeping.new_writer_id``). A write compares the old and new clear arrays:
added items get a new dot, kept items keep theirs, removed items lose theirs while the
context still covers them. A merge keeps a dot if every leaf either holds it or has not
seen it (n beyond that leaf's context for the writer); an item is present when one of
its dots survives; contexts merge by maximum. Hence a removal concurrent with any other
edit stays removed, and an item added again concurrently with its removal (a new dot
the remover has not seen) stays. A replayed old leaf brings nothing back either: the
current context covers every dot it holds.

Items without dots (arrays written before sets kept them: no ``meta.sets``) merge as
before, by union. The next write gives them dots named after the revision it is
written over (``@<rev>``), so two nodes upgrading the same revision agree on them and a
removal on one of them is still observed by the other.

``digest`` ties the record to the stored array: a release that did not keep these
records carries ``meta`` over unchanged while changing the array, and such a record no
longer matches and counts as absent (union semantics) rather than misnaming items.

Size: one dot per item per writer that added it concurrently, plus one context entry
per writer that ever added an item; removals leave nothing behind. Context entries are
never dropped: without one a leaf that has not seen a removal could bring the item back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..canonical import canonical, digest
from ..vocabulary import JSONObject

Dot = tuple[str, int]


class SetConflict(ValueError):
    """Leaves that disagree on what a dot added (never the item values)."""


@dataclass(frozen=True)
class Record:
    dots: tuple[tuple[Dot, ...], ...]  # aligned with the array's items
    context: dict[str, int]

    def holds(self) -> set[Dot]:
        return {dot for dots in self.dots for dot in dots}

    @property
    def empty(self) -> bool:
        """Nothing to remember: no item, nothing seen (a set never written)."""
        return not self.dots and not self.context


def stored_digest(stored: Any) -> str | None:
    return None if stored is None else digest(stored, 32)


def record_of(meta: Any, name: str, stored: Any, items: list[Any] | None) -> Record | None:
    """The record of set ``name`` in a document's ``meta`` if it describes ``stored``
    (whose clear value is ``items``); None when absent, stale or malformed."""
    raw = (meta.get("sets") or {}).get(name) if isinstance(meta, dict) and isinstance(meta.get("sets"), dict) else None
    if not isinstance(raw, dict) or raw.get("digest") != stored_digest(stored):
        return None
    dots, context = raw.get("dots"), raw.get("context")
    if not isinstance(context, dict) or not all(_count(v) for v in context.values()):
        return None
    if not isinstance(dots, list) or len(dots) != len(items or ()):
        return None
    try:
        parsed = tuple(tuple(_dot(d) for d in item) for item in dots)
    except (TypeError, ValueError):
        return None
    return Record(parsed, dict(context))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dot(raw: Any) -> Dot:
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str) and _count(raw[1])):
        raise ValueError("not a dot")
    return raw[0], raw[1]


def as_meta(record: Record, stored: Any) -> JSONObject:
    """``meta.sets.<prop>`` for ``record`` describing ``stored`` (None: absent)."""
    return {
        "dots": [[list(dot) for dot in dots] for dots in record.dots],
        "context": dict(sorted(record.context.items())),
        "digest": stored_digest(stored),
    }


def written(
    record: Record | None, old: list[Any] | None, new: list[Any] | None, writer: str, base: str | None
) -> Record:
    """The record after a write turned the ``old`` clear array (described by
    ``record``, or None) into ``new``; ``base`` is the revision written over."""
    old = old or []
    context = dict(record.context) if record else {}
    old_dots = [list(dots) for dots in record.dots] if record else [[] for _ in old]
    undotted = [i for i, dots in enumerate(old_dots) if not dots]
    if undotted and base is not None:  # upgrade: named after the revision, so every node agrees
        upgrade = f"@{base}"
        for i in undotted:
            old_dots[i] = [(upgrade, i + 1)]
        context[upgrade] = max(context.get(upgrade, 0), len(old))
    unmatched: dict[bytes, list[int]] = {}
    for i, item in enumerate(old):
        unmatched.setdefault(canonical(item), []).append(i)
    dots: list[tuple[Dot, ...]] = []
    for item in new or []:
        same = unmatched.get(canonical(item))
        if same:
            dots.append(tuple(sorted(old_dots[same.pop(0)])))
        else:
            context[writer] = context.get(writer, 0) + 1
            dots.append(((writer, context[writer]),))
    return Record(tuple(dots), context)


def merged(leaves: list[tuple[list[Any] | None, Record | None]]) -> tuple[list[Any], Record]:
    """The merge of one set over leaves — (clear array or None when absent, its record or
    None) — ranked best first (their order gives the items' order): the surviving items
    and their record. Raises SetConflict."""
    records = [record for _, record in leaves if record is not None]
    held = [(record, record.holds()) for record in records]

    def survives(dot: Dot) -> bool:
        return all(dot in holds or dot[1] > record.context.get(dot[0], 0) for record, holds in held)

    items: dict[bytes, Any] = {}
    dots: dict[bytes, set[Dot]] = {}
    added_by: dict[Dot, bytes] = {}
    for values, record in leaves:
        for i, item in enumerate(values or []):
            key = canonical(item)
            mine = record.dots[i] if record is not None else ()
            for dot in mine:
                if added_by.setdefault(dot, key) != key:
                    raise SetConflict(f"dot {list(dot)} names two different items")
            live = {dot for dot in mine if survives(dot)}
            if live or not mine:  # no dots: written before sets kept them, merged by union
                items.setdefault(key, item)
                dots.setdefault(key, set()).update(live)
    context: dict[str, int] = {}
    for record in records:
        for writer, n in record.context.items():
            context[writer] = max(context.get(writer, 0), n)
    return list(items.values()), Record(tuple(tuple(sorted(dots[key])) for key in items), context)
