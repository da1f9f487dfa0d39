"""What a history holds: operations as clients saw them (invoke and complete times,
sidecar, client, status, ETag, ``Write-Quorum``, the document version the answer showed)
and the final state the nodes and sidecars agreed on (or not). Plain data, JSON lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

# Operation kinds. A ``write`` is a PUT with If-Match (counter + 1, a unique token appended);
# a ``patch`` a merge PATCH without If-Match (the client's next mark); ``create`` a POST with
# an Idempotency-Key; ``delete`` a DELETE with If-Match; ``read`` a GET.
READ, WRITE, PATCH, CREATE, DELETE = "read", "write", "patch", "create", "delete"
WRITES = (WRITE, PATCH, CREATE, DELETE)


@dataclass(frozen=True)
class Version:
    """A document version as an answer showed it: its revision and the values the checks
    follow. ``tokens`` lists every If-Match write in the chain, in order; ``marks`` holds
    each client's last blind-PATCH value."""

    rev: str
    counter: int = 0
    tokens: tuple[str, ...] = ()
    marks: Mapping[str, int] = field(default_factory=dict)

    @property
    def generation(self) -> int:
        return int(self.rev.split("-", 1)[0])

    @classmethod
    def shown(cls, rev: str, body: Mapping) -> Version:
        """From a representation (or a stored document) and its revision."""
        return cls(rev, int(body.get("counter") or 0), tuple(body.get("tokens") or ()), dict(body.get("marks") or {}))

    def short(self) -> str:
        tail = ", ".join(self.tokens[-3:])
        return f"{self.rev[:14]} (counter {self.counter}, {len(self.tokens)} tokens …{tail})"


@dataclass
class Op:
    """One operation: invoked, then completed with an answer (``status``) or none (None:
    connection lost or timed out; its effect is unknown)."""

    index: int
    client: str
    sidecar: str
    kind: str
    doc: str | None
    invoked: float
    completed: float = 0.0
    status: int | None = None
    if_match: str | None = None  # the revision the write was made over (If-Match)
    quorum: str | None = None  # the Write-Quorum header
    retry_after: str | None = None
    version: Version | None = None  # what the answer showed: a read, a write's result, a 412's current
    token: str | None = None  # a write's token
    mark: int | None = None  # a patch's mark
    key: str | None = None  # a create's Idempotency-Key
    request_id: str | None = None
    error: str | None = None  # the problem code, or the exception when nothing came

    @property
    def acknowledged(self) -> bool:
        """Answered as done: 200/201 (204 for a delete)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def not_met(self) -> bool:
        return self.quorum == "not-met"

    @property
    def refused(self) -> bool:
        """Answered as not done (a 4xx): nothing was stored."""
        return self.status is not None and 400 <= self.status < 500

    @property
    def uncertain(self) -> bool:
        """No answer, or a 5xx: it may or may not have taken effect."""
        return not self.acknowledged and not self.refused

    def describe(self) -> str:
        method = {READ: "GET", WRITE: "PUT", PATCH: "PATCH", CREATE: "POST", DELETE: "DELETE"}[self.kind]
        parts = [f"#{self.index} {method} by {self.client} via {self.sidecar}"]
        if self.if_match:
            parts.append(f"If-Match {self.if_match[:14]}")
        if self.token:
            parts.append(f"token {self.token}")
        if self.mark is not None:
            parts.append(f"mark {self.mark}")
        answer = "no answer" if self.status is None else str(self.status)
        if self.not_met:
            answer += " Write-Quorum: not-met"
        parts.append(f"{self.invoked:.3f}–{self.completed:.3f} s → {answer}")
        if self.version is not None:
            parts.append(f"showing {self.version.short()}")
        if self.request_id:
            parts.append(f"request {self.request_id}")
        return ", ".join(parts)


@dataclass
class Final:
    """The end state after the final sweep. ``docs``: every document of the test type on the
    reference node, by id; ``keys``: each one's Idempotency-Key property; ``conflicts``:
    revisions still in ``_conflicts``; ``nodes`` and ``sidecars``: what each node and each
    sidecar answered for every id ({id: rev, or None when absent})."""

    docs: dict[str, Version] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    nodes: dict[str, dict[str, str | None]] = field(default_factory=dict)
    sidecars: dict[str, dict[str, str | None]] = field(default_factory=dict)


def save(path: Path, ops: Iterable[Op], final: Final, notes: Mapping) -> None:
    """One JSON object per line: notes (the run's settings and faults), every op, the final state."""
    with open(path, "wb") as out:
        out.write(orjson.dumps({"notes": notes}) + b"\n")
        for op in ops:
            out.write(orjson.dumps({"op": asdict(op)}) + b"\n")
        out.write(orjson.dumps({"final": asdict(final)}) + b"\n")


def load(path: Path) -> tuple[list[Op], Final, dict]:
    ops, final, notes = [], Final(), {}
    for line in Path(path).read_bytes().splitlines():
        item = orjson.loads(line)
        if "op" in item:
            raw = item["op"]
            version = raw.pop("version")
            ops.append(Op(**raw, version=_version(version)))
        elif "final" in item:
            raw = item["final"]
            final = Final(**{**raw, "docs": {k: _version(v) for k, v in raw["docs"].items()}})
        else:
            notes = item["notes"]
    return ops, final, notes


def _version(raw: dict | None) -> Version | None:
    return None if raw is None else Version(raw["rev"], raw["counter"], tuple(raw["tokens"]), raw["marks"])
