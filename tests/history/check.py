"""The checks: pure functions of a recorded history and its final state.

An acknowledged write's *effect* is what must stay: an If-Match write's token in
``tokens``, a blind PATCH's mark (``marks[client] >= mark``), a create's document, a
delete's absence. A version observed later (a read, a write's result, a 412's
``current``, invoked after the write completed) either has the effect, or may be an
*older* version of the chain that led to the write (lower generation, its tokens a prefix,
counter and marks no higher: a stale read), or it is a version the write is missing from:
the write was lost. Stale reads are judged per sidecar (read-your-writes), per client
(monotonic reads) and measured across sidecars (staleness). Writes answered with
``Write-Quorum: not-met`` are judged the same way but only reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .record import CREATE, DELETE, PATCH, READ, WRITE, Final, Op, Version

FAILING = {
    "lost_write": "quorum-acknowledged writes lost",
    "lost_update": "lost updates (two acknowledged If-Match writes from one ETag)",
    "refused_write_took_effect": "writes answered 412 that took effect",
    "read_your_writes": "read-your-writes violations (per sidecar)",
    "monotonic_reads": "monotonic-read violations (per client)",
    "bad_5xx": "5xx answers other than 503 + Retry-After",
    "key_created_twice": "Idempotency-Keys that created twice",
    "conflicts_left": "documents with _conflicts after the final sweep",
    "final_disagreement": "final-state disagreements (nodes, sidecars)",
}
REPORTED = {
    "not_met_lost": "not-met writes lost",
    "not_met_lost_update": "lost updates involving a not-met write",
    "refused_write_seen_in_flight": "writes answered 412 seen only by a read overlapping them",
    "not_met_key_twice": "Idempotency-Keys with two documents, none of whose creates was answered met",
}


@dataclass(frozen=True)
class Violation:
    check: str
    doc: str | None
    message: str
    permanent: bool = False  # a lost write still missing from the final state


@dataclass
class Result:
    operations: int
    acknowledged: int
    not_met: int
    reads: int
    violations: dict[str, list[Violation]] = field(default_factory=dict)
    staleness: list[float] = field(default_factory=list)  # seconds, one per stale cross-sidecar read

    @property
    def failed(self) -> bool:
        return any(self.violations[name] for name in FAILING)

    def count(self, name: str) -> int:
        return len(self.violations[name])


def check(ops: Sequence[Op], final: Final) -> Result:
    history = History(ops)
    result = Result(
        operations=len(ops),
        acknowledged=sum(op.acknowledged for op in history.writes),
        not_met=sum(op.acknowledged and op.not_met for op in history.writes),
        reads=sum(op.kind == READ for op in ops),
        violations={name: [] for name in (*FAILING, *REPORTED)},
    )
    found = result.violations
    stale_by_read: dict[int, list[Op]] = defaultdict(list)
    for write in history.acknowledged_writes():
        lost = history.lost(write, final, stale_by_read)
        if lost is not None:
            found[lost.check].append(lost)
    found["read_your_writes"] += history.read_your_writes(stale_by_read)
    result.staleness = history.cross_sidecar_lags(stale_by_read)
    found["monotonic_reads"] += history.monotonic_reads()
    for violation in lost_updates(ops):
        found[violation.check].append(violation)
    for refused in history.refused_but_visible(final):
        found[refused.check].append(refused)
    found["bad_5xx"] += bad_5xx(ops)
    for violation in keys_created_twice(ops, final):
        found[violation.check].append(violation)
    found["conflicts_left"] += [
        Violation("conflicts_left", doc, f"document {doc}: _conflicts {revs} after the final sweep")
        for doc, revs in sorted(final.conflicts.items())
        if revs
    ]
    found["final_disagreement"] += disagreements(final)
    return result


class History:
    """The operations indexed by document."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.ops = ops
        self.writes = [op for op in ops if op.kind in (WRITE, PATCH, CREATE, DELETE)]
        self.observed: dict[str, list[Op]] = defaultdict(list)  # doc → ops that showed it (or its absence)
        self.by_rev: dict[tuple[str, str], Version] = {}
        self.deletes: dict[str, list[Op]] = defaultdict(list)
        self.refused_deletes: dict[str, list[Op]] = defaultdict(list)  # answered 412
        for op in sorted(ops, key=lambda op: op.invoked):
            if op.doc is None:
                continue
            if op.kind == DELETE:
                if op.status == 412:
                    self.refused_deletes[op.doc].append(op)
                elif not op.refused:
                    self.deletes[op.doc].append(op)
            if shows(op) or absent(op):
                self.observed[op.doc].append(op)
            if op.version is not None:
                self.by_rev[(op.doc, op.version.rev)] = op.version
        self._tokens: dict[int, frozenset[str]] = {}

    def acknowledged_writes(self) -> Iterable[Op]:
        """Acknowledged writes with an effect (a create's replay, 200, made nothing new)."""
        for op in self.writes:
            if op.acknowledged and op.doc is not None and not (op.kind == CREATE and op.status != 201):
                yield op

    def has(self, write: Op, version: Version | None) -> bool:
        """Does ``version`` (None: the document is absent) hold ``write``'s effect?"""
        if write.kind == DELETE:
            return version is None
        if version is None:
            return False
        if write.kind == WRITE:
            tokens = self._tokens.get(id(version))
            if tokens is None:
                tokens = self._tokens[id(version)] = frozenset(version.tokens)
            return write.token in tokens
        if write.kind == PATCH:
            return version.marks.get(write.client, -1) >= (write.mark or 0)
        return True  # a create: the document is there

    def made(self, write: Op) -> Version | None:
        """The version the write made (a delete: the version it deleted)."""
        if write.kind == DELETE:
            return self.by_rev.get((write.doc or "", write.if_match or ""))
        return write.version

    def maybe_deleted(self, doc: str, before: float = float("inf")) -> bool:
        """Some delete of ``doc`` not refused was sent before ``before``."""
        return any(op.invoked < before for op in self.deletes[doc])

    def refused_delete_overlapping(self, seen: Op) -> Op | None:
        """A delete of ``seen``'s document answered 412 while ``seen`` was in flight: its
        tombstone stood on the copies that stored it, below the live leaf that won
        (docs/consistency.md §2.3), and a quorum of those copies answers 404."""
        refused = self.refused_deletes[seen.doc or ""]
        return next((d for d in refused if d.invoked < seen.completed and seen.invoked < d.completed), None)

    def lost(self, write: Op, final: Final, stale_by_read: dict[int, list[Op]]) -> Violation | None:
        """``write``'s effect missing from a later version or from the final state; stale
        observations are collected in ``stale_by_read`` (observation index → writes)."""
        doc = write.doc or ""
        made = self.made(write)
        missing = []
        for seen in self.observed[doc]:
            if seen.invoked < write.completed:  # began before the write was acknowledged
                continue
            version = seen.version if shows(seen) else None
            if self.has(write, version):
                continue
            if version is None:
                if not self.maybe_deleted(doc, seen.completed) and not self.refused_delete_overlapping(seen):
                    missing.append(seen)
            elif (write.kind == DELETE and version.rev == write.if_match) or older(version, made, write.if_match):
                stale_by_read[seen.index].append(write)
            else:
                missing.append(seen)
        end = final.docs.get(doc)
        at_end = not self.has(write, end) and not (end is None and self.maybe_deleted(doc))
        if not missing and not at_end:
            return None
        parts = [f"document {doc}: {write.describe()}"]
        if missing:
            parts.append(f"is missing from {len(missing)} later version(s), first {missing[0].describe()}")
        final = end.short() if end else "absent"
        if at_end:
            parts.append(f"and from the final state ({final})")
        else:
            parts.append(f"(the final state has it: {final})" if end else "(deleted by the end)")
        name = "not_met_lost" if write.not_met else "lost_write"
        return Violation(name, doc, "; ".join(parts[:1]) + " " + " ".join(parts[1:]), permanent=at_end)

    def read_your_writes(self, stale_by_read: dict[int, list[Op]]) -> list[Violation]:
        found = []
        for seen in self._reads(stale_by_read):
            own = [w for w in stale_by_read[seen.index] if w.sidecar == seen.sidecar and not w.not_met]
            if own:
                found.append(
                    Violation(
                        "read_your_writes",
                        seen.doc,
                        f"document {seen.doc}: {seen.describe()} is older than {len(own)} write(s) "
                        f"{seen.sidecar} acknowledged before it, the last {own[-1].describe()}",
                    )
                )
        return found

    def cross_sidecar_lags(self, stale_by_read: dict[int, list[Op]]) -> list[float]:
        """Per stale read: how long the oldest write through the other sidecar that it
        misses had been acknowledged when the read was sent."""
        lags = []
        for seen in self._reads(stale_by_read):
            others = [w for w in stale_by_read[seen.index] if w.sidecar != seen.sidecar]
            if others:
                lags.append(seen.invoked - min(w.completed for w in others))
        return sorted(lags)

    def _reads(self, stale_by_read: dict[int, list[Op]]) -> list[Op]:
        return [op for op in self.ops if op.index in stale_by_read and op.kind == READ]

    def monotonic_reads(self) -> list[Violation]:
        found = []
        seen_by: dict[tuple[str, str], list[Op]] = defaultdict(list)
        for op in sorted(self.ops, key=lambda op: op.invoked):
            if op.kind != READ or not shows(op) or op.version is None:
                continue
            earlier = seen_by[(op.client, op.doc or "")]
            newer = [e for e in earlier if e.version is not None and older(op.version, e.version)]
            if newer:
                found.append(
                    Violation(
                        "monotonic_reads",
                        op.doc,
                        f"document {op.doc}: {op.describe()} after the same client had read {newer[-1].describe()}",
                    )
                )
            earlier.append(op)
        return found

    def refused_but_visible(self, final: Final) -> list[Violation]:
        """An If-Match write answered 412 (nothing stored) whose token shows up in a version
        observed after its answer, in the final state or in its own ``current``: it took
        effect. Seen only by operations overlapping it, it is reported: its leaf stood on
        the copies that stored it until the writer withdrew it (docs/consistency.md). A
        delete answered 412 seen only by a 404 overlapping it is reported likewise."""
        shown: dict[str, list[Op]] = defaultdict(list)
        for op in self.ops:
            if shows(op) and op.version is not None:
                for token in op.version.tokens:
                    shown[token].append(op)
        in_final = {token for version in final.docs.values() for token in version.tokens}
        found = []
        for op in self.writes:
            if op.kind != WRITE or op.status != 412 or not (op.token in shown or op.token in in_final):
                continue
            after = [seen for seen in shown[op.token] if seen is op or seen.invoked >= op.completed]
            if after or op.token in in_final:
                where = after[0] if after else None
                check = "refused_write_took_effect"
            else:
                where, check = shown[op.token][0], "refused_write_seen_in_flight"
            if where is op:
                seen = "the current it was answered with"
            else:
                seen = where.describe() if where is not None else "the final state"
            found.append(Violation(check, op.doc, f"document {op.doc}: {op.describe()}, yet its token is in {seen}"))
        for seen in self.ops:
            refused = self.refused_delete_overlapping(seen) if absent(seen) else None
            if refused is not None and not self.maybe_deleted(seen.doc or "", seen.completed):
                found.append(
                    Violation(
                        "refused_write_seen_in_flight",
                        seen.doc,
                        f"document {seen.doc}: {refused.describe()}, yet {seen.describe()} overlapping it found none",
                    )
                )
        return found


def shows(op: Op) -> bool:
    """The answer showed a version of the document: a read, a write's result, a 412's
    ``current`` (a create's replay, 200, shows the first result, not the document now)."""
    if op.version is None or op.status is None:
        return False
    return op.status == 412 or (op.status in (200, 201) and not (op.kind == CREATE and op.status == 200))


def absent(op: Op) -> bool:
    """The answer said the document does not exist."""
    return op.status == 404 and op.kind in (READ, WRITE, PATCH, DELETE)


def older(version: Version, than: Version | None, than_rev: str | None = None) -> bool:
    """Can ``version`` be an earlier version of the chain that led to ``than``? (When
    ``than`` was never seen, only the generation of its revision ``than_rev`` is known.)"""
    if than is None:
        return than_rev is not None and version.generation < int(than_rev.split("-")[0])
    return (
        version.generation < than.generation
        and than.tokens[: len(version.tokens)] == version.tokens
        and version.counter <= than.counter
        and all(mark <= than.marks.get(client, -1) for client, mark in version.marks.items())
    )


def lost_updates(ops: Sequence[Op]) -> list[Violation]:
    from_etag: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind in (WRITE, DELETE) and op.acknowledged and op.if_match and op.doc:
            from_etag[(op.doc, op.if_match)].append(op)
    found = []
    for (doc, rev), writes in sorted(from_etag.items()):
        if len(writes) > 1:
            name = "not_met_lost_update" if any(w.not_met for w in writes) else "lost_update"
            listed = "; ".join(w.describe() for w in writes)
            found.append(
                Violation(name, doc, f"document {doc}: {len(writes)} writes acknowledged from {rev}: {listed}")
            )
    return found


def bad_5xx(ops: Sequence[Op]) -> list[Violation]:
    return [
        Violation("bad_5xx", op.doc, f"{op.describe()} ({op.error}; Retry-After {op.retry_after!r})")
        for op in ops
        if op.status is not None and op.status >= 500 and (op.status != 503 or not op.retry_after)
    ]


def keys_created_twice(ops: Sequence[Op], final: Final) -> list[Violation]:
    """One Idempotency-Key, more than one document: in the answers, or in the final state.
    A failure when a create of the key was answered 201 without ``not-met`` (its claim is on
    every copy, so no other can exist); reported apart otherwise (a claim stored below
    quorum may have a rival on a copy it could not reach: docs/consistency.md §2; a replay's
    200 repeats what a create decided)."""
    ids: dict[str, set[str]] = defaultdict(set)
    met: set[str] = set()
    for op in ops:
        if op.kind == CREATE and op.key and op.acknowledged and op.doc:
            ids[op.key].add(op.doc)
            if op.status == 201 and not op.not_met:
                met.add(op.key)
    for doc, key in final.keys.items():
        ids[key].add(doc)
    return [
        Violation(
            "key_created_twice" if key in met else "not_met_key_twice",
            None,
            f"Idempotency-Key {key}: documents {sorted(docs)}",
        )
        for key, docs in sorted(ids.items())
        if len(docs) > 1
    ]


def disagreements(final: Final) -> list[Violation]:
    """Every node and sidecar against the first node: the same revision (or absence) per id."""
    if not final.nodes:
        return []
    reference_name, reference = next(iter(final.nodes.items()))
    found = []
    for name, answers in [*list(final.nodes.items())[1:], *final.sidecars.items()]:
        differ = sorted(doc for doc in set(reference) | set(answers) if reference.get(doc) != answers.get(doc))
        if differ:
            shown = ", ".join(f"{doc}: {answers.get(doc)} vs {reference.get(doc)}" for doc in differ[:3])
            found.append(
                Violation(
                    "final_disagreement",
                    differ[0],
                    f"{name} disagrees with {reference_name} on {len(differ)} document(s): {shown}",
                )
            )
    return found
