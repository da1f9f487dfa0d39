"""The revision tree of one document, kept as CouchDB keeps it.

A revision is ``(generation, hash)``; its text form is ``"<generation>-<hash>"``. Every
revision names its parent; a revision with no children is a *leaf*. A revision known
only from a history (``_revisions`` of a replicated write) has no body: CouchDB calls it
*missing*. The *winner* is the leaf CouchDB shows: live leaves before deleted ones, then
the highest generation, then the greatest hash. Bodies of older revisions are kept (as
if the database were never compacted), so ``?rev=`` of a non-leaf answers with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .http import bad_request, dumps

Rev = tuple[int, str]


def parse_rev(text: Any) -> Rev:
    """``"3-abc"`` -> ``(3, "abc")``; 400 ``Invalid rev format`` for anything else. A hash of
    32 hex digits is one CouchDB keeps as 16 bytes: its case is lost."""
    if isinstance(text, str):
        generation, dash, digest = text.partition("-")
        if dash and digest and generation.isdigit():
            return int(generation), kept_hash(digest)
    raise bad_request("Invalid rev format")


def kept_hash(digest: str) -> str:
    return digest.lower() if _is_md5(digest) else digest


def _is_md5(digest: str) -> bool:
    return len(digest) == 32 and all(c in "0123456789abcdefABCDEF" for c in digest)


def rev_order(rev: Rev) -> tuple[int, bytes]:
    """How CouchDB orders revisions: by generation, then by the hash as it keeps it (the
    bytes a 32-hex-digit hash stands for, any other as its text)."""
    digest = rev[1]
    return rev[0], bytes.fromhex(digest) if _is_md5(digest) else digest.encode()


def rev_text(rev: Rev) -> str:
    return f"{rev[0]}-{rev[1]}"


def new_rev(parent: Rev | None, body: dict, deleted: bool) -> Rev:
    """The revision an edit of ``parent`` makes: a digest of the parent, the deletion flag
    and the body (keys in their order), so the same edit of the same revision always
    makes the same revision id, as on CouchDB (whose digest differs: it hashes Erlang terms)."""
    start, digest = parent or (0, "")
    content = dumps([deleted, start, digest, body])
    return start + 1, hashlib.md5(content, usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class Node:
    parent: Rev | None
    body: dict | None  # None: missing (known only from a history)
    deleted: bool
    children: set[Rev] = field(default_factory=set)


class RevTree:
    """All revisions of one document."""

    __slots__ = ("leaves", "nodes")

    def __init__(self) -> None:
        self.nodes: dict[Rev, Node] = {}
        self.leaves: set[Rev] = set()

    def __contains__(self, rev: Rev) -> bool:
        return rev in self.nodes

    def _rank(self, rev: Rev) -> tuple[bool, tuple[int, bytes]]:
        return not self.nodes[rev].deleted, rev_order(rev)

    def winner(self) -> Rev:
        return max(self.leaves, key=self._rank)

    def ranked_leaves(self) -> list[Rev]:
        """The leaves, winner first, in the order CouchDB lists them (``style=all_docs``,
        ``_conflicts``): live before deleted, then generation and hash, highest first."""
        return sorted(self.leaves, key=self._rank, reverse=True)

    def conflicts(self, deleted: bool) -> list[Rev]:
        """The live (or deleted) leaves other than the winner, as ``_conflicts``
        (``_deleted_conflicts``) lists them."""
        winner = self.winner()
        return [rev for rev in self.ranked_leaves() if rev != winner and self.nodes[rev].deleted == deleted]

    def path(self, rev: Rev) -> list[Rev]:
        """``rev`` and its ancestors, newest first."""
        path = [rev]
        parent = self.nodes[rev].parent
        while parent is not None:
            path.append(parent)
            parent = self.nodes[parent].parent
        return path

    def descendant_leaves(self, rev: Rev) -> list[Rev]:
        """The leaves ``rev`` leads to (itself if it is one)."""
        found: list[Rev] = []
        stack = [rev]
        while stack:
            node = self.nodes[stack.pop()]
            for child in node.children:
                (stack if self.nodes[child].children else found).append(child)
        return found if self.nodes[rev].children else [rev]

    def available(self, rev: Rev) -> bool:
        node = self.nodes.get(rev)
        return node is not None and node.body is not None

    def grow(self, parent: Rev | None, rev: Rev, body: dict, deleted: bool) -> None:
        """Add ``rev`` as a child of ``parent`` (a leaf, or None for a new root), as an
        interactive edit does. A parent not in the tree is added as missing."""
        if parent is not None and parent not in self.nodes:
            self.nodes[parent] = Node(None, None, False)
            self.leaves.add(parent)
        self._attach(rev, Node(parent, body, deleted))

    def _attach(self, rev: Rev, node: Node) -> None:
        self.nodes[rev] = node
        self.leaves.add(rev)
        if node.parent is not None:
            self.nodes[node.parent].children.add(rev)
            self.leaves.discard(node.parent)

    def merge(self, history: list[Rev], body: dict, deleted: bool) -> bool:
        """Merge a replicated revision with its history (newest first), as
        ``new_edits: false`` does; whether the tree changed. A revision already held is
        kept as it is, unless it was missing: then it gets this body."""
        changed = False
        parent: Rev | None = None
        for rev in reversed(history):
            node = self.nodes.get(rev)
            if node is None:
                self._attach(rev, Node(parent, None, False))
                changed = True
            elif node.parent is None and parent is not None:  # a root that history extends
                node.parent = parent
                self.nodes[parent].children.add(rev)
                self.leaves.discard(parent)
                changed = True
            parent = rev
        newest = self.nodes[history[0]]
        if newest.body is None:
            newest.body, newest.deleted, changed = body, deleted, True
        return changed

    def purge(self, rev: Rev) -> bool:
        """Remove the leaf ``rev`` and the ancestors no other leaf shares; whether it was one."""
        if rev not in self.leaves:
            return False
        self.leaves.discard(rev)
        while (parent := self.nodes.pop(rev).parent) is not None:
            siblings = self.nodes[parent].children
            siblings.discard(rev)
            if siblings:
                break
            rev = parent
        return True
