"""Reading an in-memory database the way CouchDB 3.5 answers: a document (with its
revision options), ``open_revs``, ``_all_docs``, ``_bulk_get`` and ``_changes``."""

from __future__ import annotations

import bisect
from typing import Any

from .database import Doc, MemoryDatabase, parse_seq, seq_token
from .http import HttpError, Params, bad_request, loads, missing, not_implemented
from .revtree import Rev, RevTree, parse_rev, rev_order, rev_text

META = ("_revs_info", "_conflicts", "_deleted_conflicts", "_local_seq")  # a read showing one has no ETag


def render(docid: str, tree: RevTree, rev: Rev, *, revisions: bool = False) -> dict:
    node = tree.nodes[rev]
    doc = {"_id": docid, "_rev": rev_text(rev), **(node.body or {})}
    if node.deleted:
        doc["_deleted"] = True
    if revisions:
        doc["_revisions"] = {"start": rev[0], "ids": [digest for _, digest in tree.path(rev)]}
    return doc


def winner_doc(docid: str, doc: Doc, *, conflicts: bool) -> dict:
    """The winner as ``include_docs`` shows it (with ``_conflicts`` if asked)."""
    rendered = render(docid, doc.tree, doc.tree.winner())
    if conflicts and (live := doc.tree.conflicts(deleted=False)):
        rendered["_conflicts"] = [rev_text(rev) for rev in live]
    return rendered


def read_doc(db: MemoryDatabase, docid: str, params: Params) -> dict:
    """``GET /db/doc``: the winner (404 ``deleted`` when it is a tombstone), or ``?rev=``
    (any revision with a body, tombstones too), with what the options add."""
    doc = db.docs.get(docid)
    revisions = params.flag("revs")
    if "rev" in params:
        rev = parse_rev(params.text("rev"))
        if doc is None or not doc.tree.available(rev):
            raise missing()
        return render(docid, doc.tree, rev, revisions=revisions)
    if doc is None:
        raise missing()
    if doc.deleted:
        raise missing("deleted")
    meta = params.flag("meta")
    rendered = render(docid, doc.tree, doc.tree.winner(), revisions=revisions)
    if params.flag("revs_info") or meta:
        rendered["_revs_info"] = [
            {"rev": rev_text(rev), "status": _status(doc.tree, rev)} for rev in doc.tree.path(doc.tree.winner())
        ]
    for name, deleted in (("conflicts", False), ("deleted_conflicts", True)):
        if (params.flag(name) or meta) and (leaves := doc.tree.conflicts(deleted)):
            rendered["_" + name] = [rev_text(rev) for rev in leaves]
    if params.flag("local_seq"):
        rendered["_local_seq"] = doc.seq
    return rendered


def _status(tree: RevTree, rev: Rev) -> str:
    node = tree.nodes[rev]
    return "missing" if node.body is None else "deleted" if node.deleted else "available"


def open_revs(db: MemoryDatabase, docid: str, params: Params) -> list[dict]:
    """``?open_revs=all`` (every leaf, tombstones too, by revision) or ``open_revs=[..]``
    (those found by revision, then the missing ones as asked; ``latest`` asks for the
    leaves each one leads to)."""
    doc = db.docs.get(docid)
    revisions = params.flag("revs")
    if params.text("open_revs") == "all":
        if doc is None:
            raise missing()
        return [
            {"ok": render(docid, doc.tree, rev, revisions=revisions)} for rev in sorted(doc.tree.leaves, key=rev_order)
        ]
    asked = params.json("open_revs")
    if not isinstance(asked, list):
        raise bad_request("invalid UTF-8 JSON")
    wanted = list(dict.fromkeys(parse_rev(rev) for rev in asked))
    tree = doc.tree if doc is not None else RevTree()
    if params.flag("latest"):
        wanted = list(
            dict.fromkeys(leaf for rev in wanted for leaf in (tree.descendant_leaves(rev) if rev in tree else [rev]))
        )
    found = sorted((rev for rev in wanted if tree.available(rev)), key=rev_order)
    return [{"ok": render(docid, tree, rev, revisions=revisions)} for rev in found] + [
        {"missing": rev_text(rev)} for rev in wanted if not tree.available(rev)
    ]


def bulk_get(db: MemoryDatabase, body: Any, params: Params) -> dict:
    docs = body.get("docs") if isinstance(body, dict) else None
    if docs is None:
        raise bad_request("Missing JSON list of 'docs'.")
    if not isinstance(docs, list):
        raise HttpError(500, "unknown_error", "function_clause")
    revisions = params.flag("revs")
    return {"results": [_bulk_get_one(db, item, revisions) for item in docs]}


def _bulk_get_one(db: MemoryDatabase, item: Any, revisions: bool) -> dict:
    docid = item.get("id") if isinstance(item, dict) else None
    if not docid:
        error = {"id": None, "rev": None, "error": "bad_request", "reason": "document id missed"}
        return {"id": None, "docs": [{"error": error}]}
    doc = db.docs.get(docid)
    if doc is not None and not item.get("rev"):  # every leaf, deleted ones too, in revision order
        leaves = sorted(doc.tree.leaves, key=rev_order)
        return {"id": docid, "docs": [{"ok": render(docid, doc.tree, rev, revisions=revisions)} for rev in leaves]}
    rev = parse_rev(item["rev"]) if item.get("rev") else None
    if doc is None or rev is None or not doc.tree.available(rev):
        error = {"id": docid, "rev": item.get("rev") or "undefined", "error": "not_found", "reason": "missing"}
        return {"id": docid, "docs": [{"error": error}]}
    return {"id": docid, "docs": [{"ok": render(docid, doc.tree, rev, revisions=revisions)}]}


# -- _all_docs ------------------------------------------------------------------


def all_docs(db: MemoryDatabase, params: Params, keys: Any) -> dict:
    include_docs = params.flag("include_docs")
    conflicts = include_docs and params.flag("conflicts")
    skip, limit = params.integer("skip", 0) or 0, params.integer("limit")
    window = slice(skip, None if limit is None else skip + limit)
    if keys is None:
        keys = params.json("keys")
    if keys is not None:
        if not isinstance(keys, list):
            raise bad_request("`keys` member must be an array.")
        rows, offset = [_key_row(db, key, include_docs, conflicts) for key in keys[window]], None
    else:
        ids, before = _range(db, params)
        rows, offset = (
            [_row(docid, db.docs[docid], include_docs, conflicts) for docid in ids[window]],
            before + min(skip, len(ids)),
        )
    answer: dict[str, Any] = {"total_rows": len(db.live), "offset": offset}
    if params.flag("update_seq"):
        answer["update_seq"] = seq_token(db.update_seq)
    answer["rows"] = rows
    return answer


def _row(docid: str, doc: Doc, include_docs: bool, conflicts: bool) -> dict:
    row = {"id": docid, "key": docid, "value": {"rev": rev_text(doc.tree.winner())}}
    if include_docs:
        row["doc"] = winner_doc(docid, doc, conflicts=conflicts)
    return row


def _key_row(db: MemoryDatabase, key: Any, include_docs: bool, conflicts: bool) -> dict:
    doc = db.docs.get(key) if isinstance(key, str) else None
    if doc is None:
        return {"key": key, "error": "not_found"}
    if key in db.live:
        return _row(key, doc, include_docs, conflicts)
    row: dict[str, Any] = {"id": key, "key": key, "value": {"rev": rev_text(doc.tree.winner()), "deleted": True}}
    if include_docs:
        row["doc"] = None
    return row


def _range(db: MemoryDatabase, params: Params) -> tuple[list[str], int]:
    """The live ids in the range, in the order asked, and how many live ids come before it."""
    descending = params.flag("descending")
    key = params.json("key", default=_NONE)
    start = key if key is not _NONE else params.json("startkey", "start_key", default=_NONE)
    end = key if key is not _NONE else params.json("endkey", "end_key", default=_NONE)
    inclusive = params.flag("inclusive_end", True)
    ids = db.ids
    if not descending:
        low = 0 if start is _NONE else _position(ids, start, after=False)
        high = len(ids) if end is _NONE else _position(ids, end, after=inclusive)
        before = ids[:low]
        chosen = ids[low:high]
    else:
        high = len(ids) if start is _NONE else _position(ids, start, after=True)
        low = 0 if end is _NONE else _position(ids, end, after=not inclusive)
        before = ids[high:]
        chosen = ids[low:high][::-1]
    live = db.live
    return [docid for docid in chosen if docid in live], sum(1 for docid in before if docid in live)


_NONE: Any = object()


def _position(ids: list[str], key: Any, *, after: bool) -> int:
    """Where ``key`` falls among the sorted ids, in CouchDB's collation of JSON values:
    null, booleans and numbers before every string, arrays and objects after."""
    if isinstance(key, str):
        return (bisect.bisect_right if after else bisect.bisect_left)(ids, key)
    return len(ids) if isinstance(key, (list, dict)) else 0


# -- _changes -------------------------------------------------------------------


class Feed:
    """One ``_changes`` request: what it asks for, read again after each wake-up."""

    def __init__(self, db: MemoryDatabase, params: Params, body: Any) -> None:
        self.db = db
        self.since = parse_seq(params.text("since", "0") or "0", db.update_seq)
        self.limit = params.integer("limit")
        self.include_docs = params.flag("include_docs")
        self.conflicts = self.include_docs and params.flag("conflicts")
        self.descending = params.flag("descending")
        style = params.text("style", "main_only")
        if style not in ("main_only", "all_docs"):
            raise HttpError(500, "unknown_error", "badarg")
        self.all_leaves = style == "all_docs"
        self.only = _filter(db, params, body)

    def read(self) -> dict:
        seqs = []  # the changes after since: the newest are last, so read from the end
        for seq in reversed(self.db.by_seq):
            if seq <= self.since:
                break
            seqs.append(seq)
        if not self.descending:
            seqs.reverse()
        results: list[dict] = []
        for seq in seqs:
            if self.limit is not None and len(results) >= self.limit:
                break
            docid = self.db.by_seq[seq]
            if self.only is None or self.only(docid):
                results.append(self._change(seq, docid))
        if self.limit is not None and len(results) >= self.limit:
            last = seq_token(self.since) if not results else results[-1]["seq"]
        else:
            last = seq_token(self.db.update_seq)
        return {"results": results, "last_seq": last, "pending": len(seqs) - len(results)}

    def _change(self, seq: int, docid: str) -> dict:
        doc = self.db.docs[docid]
        leaves = doc.tree.ranked_leaves() if self.all_leaves else [doc.tree.winner()]
        change: dict[str, Any] = {"seq": seq_token(seq), "id": docid, "changes": [{"rev": rev_text(r)} for r in leaves]}
        if doc.deleted:
            change["deleted"] = True
        if self.include_docs:
            change["doc"] = winner_doc(docid, doc, conflicts=self.conflicts)
        return change


def _filter(db: MemoryDatabase, params: Params, body: Any) -> Any:
    name = params.text("filter")
    if name is None:
        return None
    if name == "_design":
        return lambda docid: docid.startswith("_design/")
    if name == "_doc_ids":
        ids = body.get("doc_ids") if isinstance(body, dict) and "doc_ids" in body else params.json("doc_ids")
        if not isinstance(ids, list):
            raise bad_request("`doc_ids` filter parameter is not a list of doc ids.")
        wanted = set(ids)
        return wanted.__contains__
    raise not_implemented(f"the _changes filter {name}")


def parse_keys(body: bytes | None) -> Any:
    """The ``keys`` of a POST to ``_all_docs``."""
    data = loads(body or b"{}")
    if not isinstance(data, dict) or "keys" not in data:
        raise bad_request("`keys` member must exist.")
    return data["keys"]
