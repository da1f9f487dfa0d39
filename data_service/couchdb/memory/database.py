"""One in-memory database: documents with revision trees, the sequence, local documents.

Every write is applied whole between two awaits (no request sees half of another), the
way a single CouchDB node serializes the updates of one shard. There is one shard, so
the change feed lists changes in the order they were made.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .edits import DESIGN, Edit
from .http import HttpError, bad_request, conflict, dumps, missing
from .revtree import Rev, RevTree, new_rev, parse_rev

DEFAULT_SECURITY = {"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}}


def seq_token(number: int) -> str:
    """A sequence as CouchDB 3 gives it: an opaque string led by a number."""
    return f"{number}-{hashlib.md5(b'memory-seq:%d' % number, usedforsecurity=False).hexdigest()}"


def parse_seq(text: str, now: int) -> int:
    """``since``: ``0``, ``now`` or a token this server made; 400 otherwise."""
    if text == "now":
        return now
    if text == "0":
        return 0
    number, dash, _ = text.partition("-")
    if dash and number.isdigit() and seq_token(int(number)) == text:
        return int(number)
    raise bad_request("Malformed sequence supplied in 'since' parameter.")


def replicated_history(edit: Edit) -> list[Rev]:
    """The revisions a replicated write brings, newest first: ``_revisions`` (which wins over
    ``_rev``) or ``_rev`` alone; 400 for neither."""
    if edit.history:
        return edit.history
    if edit.rev is None:
        raise bad_request("When `new_edits: false`, the document needs `_rev` or `_revisions` specified")
    return [edit.rev]


@dataclass(slots=True)
class Doc:
    tree: RevTree = field(default_factory=RevTree)
    seq: int = 0

    @property
    def deleted(self) -> bool:
        return self.tree.nodes[self.tree.winner()].deleted


class MemoryDatabase:
    def __init__(self, name: str, shards: int) -> None:
        self.name, self.shards = name, shards
        self.created = int(time.time())
        self.docs: dict[str, Doc] = {}
        self.ids: list[str] = []  # every document's id, sorted (raw collation)
        self.live: set[str] = set()  # the ids whose winner is not deleted
        self.by_seq: dict[int, str] = {}  # each document's last change, oldest first
        self.local: dict[str, tuple[int, dict]] = {}  # _local documents: (revision number, body)
        self.update_seq = 0
        self.purge_seq = 0
        self.stored_bytes = 0
        self.security: dict = DEFAULT_SECURITY
        self.revs_limit = 1000
        self._waiters: list[asyncio.Future] = []
        self._batch: dict[str, Doc] | None = None  # the documents a batch changed, in order
        self.gone = False  # deleted

    # -- writes ---------------------------------------------------------------

    def update(self, edit: Edit) -> Rev:
        """An interactive edit (``new_edits`` true): a new child of the leaf ``_rev`` names,
        or of nothing for a new document; 409 where CouchDB 3.5 gives one."""
        doc = self.docs.get(edit.docid)
        if doc is None:
            # CouchDB 3.5 creates the document on a missing parent, except on a shard never
            # written to and for design documents, where it answers 409.
            if edit.rev is not None and (self.update_seq == 0 or edit.docid.startswith(DESIGN)):
                raise conflict()
            parent = edit.rev
        elif edit.rev is not None:
            if edit.rev not in doc.tree.leaves:
                raise conflict()
            parent = edit.rev
        else:  # no _rev: only a live write over a deleted winner, which continues its branch
            parent = doc.tree.winner()
            if edit.deleted or not doc.tree.nodes[parent].deleted:
                raise conflict()
        rev = new_rev(parent, edit.body, edit.deleted)
        doc = self._doc(edit.docid)
        doc.tree.grow(parent, rev, edit.body, edit.deleted)
        self._changed(edit.docid, doc, edit.body)
        return rev

    def replicate(self, edit: Edit) -> Rev:
        """A replicated revision (``new_edits: false``) merged with its history."""
        history = replicated_history(edit)
        doc = self._doc(edit.docid)
        if doc.tree.merge(history, edit.body, edit.deleted):
            self._changed(edit.docid, doc, edit.body)
        return history[0]

    def _doc(self, docid: str) -> Doc:
        doc = self.docs.get(docid)
        if doc is None:
            doc = self.docs[docid] = Doc()
            bisect.insort(self.ids, docid)
        return doc

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Writes that take one sequence per document changed, as ``_bulk_docs`` does."""
        self._batch = {}
        try:
            yield
        finally:
            changed, self._batch = self._batch, None
            for docid, doc in changed.items():
                self._changed(docid, doc, None)

    def _changed(self, docid: str, doc: Doc, body: dict | None) -> None:
        if body is not None:
            self.stored_bytes += len(dumps(body))
        if self._batch is not None:
            self._batch[docid] = doc
            return
        self.by_seq.pop(doc.seq, None)
        self.update_seq += 1
        doc.seq = self.update_seq
        self.by_seq[doc.seq] = docid
        (self.live.discard if doc.deleted else self.live.add)(docid)
        self._wake()

    def purge(self, request: dict) -> dict:
        """``_purge``: remove the leaves named (and the ancestors no other leaf shares); a
        document left without revisions is gone, from the change feed too."""
        purged: dict[str, list[str]] = {}
        for docid, revs in request.items():
            if not isinstance(revs, list) or not all(isinstance(r, str) for r in revs):
                raise bad_request("Invalid list of revisions")
            doc = self.docs.get(docid)
            purged[docid] = [r for r in revs if doc is not None and doc.tree.purge(parse_rev(r))]
            self.purge_seq += 1
            if doc is not None and purged[docid]:
                self._after_purge(docid, doc)
        if not any(purged.values()):
            self.update_seq += 1
        return {"purge_seq": None, "purged": purged}

    def _after_purge(self, docid: str, doc: Doc) -> None:
        if doc.tree.nodes:
            self._changed(docid, doc, None)
            return
        del self.docs[docid]
        del self.by_seq[doc.seq]
        self.live.discard(docid)
        del self.ids[bisect.bisect_left(self.ids, docid)]
        self.update_seq += 1
        self._wake()

    # -- local documents (no revision check: DESIGN-NOTES section 7) ---------

    def put_local(self, edit: Edit) -> str:
        """Any write wins: without ``_rev`` the revision is ``0-1``, with ``0-N`` it is ``0-(N+1)``."""
        number = 0
        if edit.rev is not None:
            if edit.rev[0] != 0 or not edit.rev[1].isdigit():
                raise HttpError(500, "error", "Invalid rev format")
            number = int(edit.rev[1])
        if edit.deleted:
            self.local.pop(edit.docid, None)
            return "0-0"
        self.local[edit.docid] = (number + 1, edit.body)
        return f"0-{number + 1}"

    def delete_local(self, docid: str) -> str:
        if self.local.pop(docid, None) is None:
            raise missing()
        return "0-0"

    # -- the change feed's wake-ups -------------------------------------------

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def next_change(self, timeout: float) -> None:
        """Wait until the next change, at most ``timeout`` seconds."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def dropped(self) -> None:
        """The database was deleted: every long poll answers now, as on CouchDB."""
        self.gone = True
        self._wake()

    # -- counts ----------------------------------------------------------------

    def info(self) -> dict:
        return {
            "instance_start_time": str(self.created),
            "db_name": self.name,
            "purge_seq": seq_token(self.purge_seq),
            "update_seq": seq_token(self.update_seq),
            "sizes": {"file": 8192 + self.stored_bytes, "external": self.stored_bytes, "active": self.stored_bytes},
            "props": {},
            "doc_del_count": len(self.docs) - len(self.live),
            "doc_count": len(self.live),
            "disk_format_version": 8,
            "compact_running": False,
            "cluster": {"q": self.shards, "n": 1, "w": 1, "r": 1},
        }
