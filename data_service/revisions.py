"""CouchDB's revisions, as CouchDB orders them (pure).

A revision is ``N-hash``: ``N`` the generation (one more than its parent's), ``hash``
CouchDB's digest. Of a document's leaves, CouchDB's *winner* is a live leaf if there is
one, then the highest generation, then the greatest hash; the other live leaves are its
``_conflicts`` and the deleted ones its ``_deleted_conflicts``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


def rev_key(rev: str) -> tuple[int, str]:
    """CouchDB's order of revisions: generation, then the revision hash."""
    generation, _, digest = rev.partition("-")
    return int(generation), digest


def generation(rev: Any) -> int | None:
    """The ``N`` of a revision ``N-hash`` (None if ``rev`` is not one)."""
    number, dash, _ = str(rev).partition("-")
    return int(number) if dash and number.isascii() and number.isdigit() else None


def parent(doc: dict) -> str | None:
    """The revision ``doc`` (read with ``revs=true``) was written on: None for a first
    revision, or when its history was not asked for."""
    history = doc.get("_revisions")
    if not isinstance(history, dict) or not isinstance(history.get("ids"), list) or len(history["ids"]) < 2:
        return None
    return f"{history['start'] - 1}-{history['ids'][1]}"


def descends(doc: dict, rev: str) -> bool:
    """Whether ``doc`` (read with ``revs=true``) is ``rev`` or was written on top of it."""
    history = doc.get("_revisions")
    number, _ = rev_key(rev)
    if doc.get("_rev") == rev:
        return True
    if not isinstance(history, dict) or not isinstance(history.get("ids"), list):
        return False
    index = history.get("start", 0) - number
    return 0 <= index < len(history["ids"]) and f"{number}-{history['ids'][index]}" == rev


@dataclass(frozen=True)
class Leaves:
    """A document's leaves sorted out: the winner's body (None when every leaf is
    deleted), the other live leaves' bodies, and the deleted leaves' bodies."""

    winner: dict | None
    conflicts: tuple[dict, ...]
    deleted: tuple[dict, ...]

    @property
    def tombstone(self) -> str | None:
        """The winning deleted leaf's revision when no leaf is live (a create over it
        continues its branch)."""
        if self.winner is not None or not self.deleted:
            return None
        return max((leaf["_rev"] for leaf in self.deleted), key=rev_key)

    def above(self) -> tuple[dict, ...]:
        """The deleted leaves of a higher generation than the live winner."""
        if self.winner is None or "_rev" not in self.winner:  # none, or one the client could not parse
            return ()
        level = rev_key(self.winner["_rev"])[0]
        return tuple(leaf for leaf in self.deleted if rev_key(leaf["_rev"])[0] > level)


def sorted_leaves(leaves: Iterable[dict]) -> Leaves:
    """``open_revs`` bodies (the ``ok`` ones) sorted out CouchDB's way."""
    live: list[dict] = []
    deleted: list[dict] = []
    for leaf in leaves:
        (deleted if leaf.get("_deleted") else live).append(leaf)
    live.sort(key=lambda leaf: rev_key(leaf["_rev"]), reverse=True)
    deleted.sort(key=lambda leaf: rev_key(leaf["_rev"]), reverse=True)
    return Leaves(live[0] if live else None, tuple(live[1:]), tuple(deleted))
