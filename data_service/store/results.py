"""What the store hands the web layer and the metrics (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..vocabulary import JSONObject, Representation


@dataclass
class Stats:
    """Counters the metrics endpoint exposes (read at scrape time)."""

    integrity_violations: int = 0
    stale_revisions: int = 0  # 412s answered
    patch_retries: int = 0  # CouchDB conflicts the sidecar's own PATCH loop retried
    write_conflicts: int = 0  # every 409 CouchDB answered to a document write
    conflicts_found: int = 0  # conflicted documents the reconciler looked at (each time)
    conflicts_resolved: int = 0  # ... merged and their losing revisions deleted
    conflicts_unresolvable: int = 0  # ... left as they are (immutable values differ, ...)
    conflict_leaves_discarded: int = 0  # losing revisions that failed their signature check
    writes_below_quorum: int = 0  # writes stored on fewer copies than asked (202): provisional
    races_withdrawn: int = 0  # ... of which another write from the same revision won: withdrawn, answered 412
    last_copy_missing: float = 0.0  # time.monotonic() of the latest 202 no race explains (a copy unreachable)
    verify_attempts: dict[str, int] = field(default_factory=dict)  # /verify calls answered, by type
    verify_failures: dict[str, int] = field(default_factory=dict)  # ... where a candidate did not match

    def verify_answered(self, type_name: str, matched: bool) -> None:
        self.verify_attempts[type_name] = self.verify_attempts.get(type_name, 0) + 1
        if not matched:
            self.verify_failures[type_name] = self.verify_failures.get(type_name, 0) + 1


@dataclass(frozen=True, slots=True)
class Answer:
    """A document as a caller is answered it, ready to send: its revision, ETag and
    representation as JSON bytes (serialized once); for a delete, no body."""

    id: str
    rev: str
    etag: str
    body: bytes = b""
    created: bool = False  # False on an Idempotency-Key replay
    below_quorum: bool = False  # stored on fewer copies than asked: provisional (docs/consistency.md)
    deleted: bool = False


@dataclass
class Page:
    """One page of a collection query: representations, the next cursor, and the
    documents left out because they failed verification (logged and counted too)."""

    items: list[Representation]
    next: str | None
    omitted: list[JSONObject]
