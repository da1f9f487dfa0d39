"""After a write was stored on fewer copies than asked (202): does it stand?
``docs/consistency.md`` §2 is the design; this is its one implementation.

With writes asking every copy (``w`` = n), a 202 means a copy was unreachable or held
a racing write from the same revision. The writer looks at every copy's leaves: no
other live leaf — the write stands, provisional; other live leaves — the type's policy
decides exactly as a merge would (``rules.base``): for ``latest``, if another leaf wins,
the write is withdrawn with a signed tombstone, and only a withdrawal every copy stored
makes the answer a 412; for ``merge`` every leaf's changes are kept, so it stands. A
delete stands only if no live leaf is left beside it.
"""

from __future__ import annotations

import logging
import time

from ..conflicts import rules
from ..couchdb import Database
from ..envelope import Removed
from ..lifecycle import Lifecycle
from ..models import ConflictPolicy, ModelType, model_of
from ..protection import IntegrityViolation, KeyUnavailable
from ..revisions import descends
from ..vocabulary import Stored
from .results import Stats

log = logging.getLogger("data_service.store")


class Races:
    def __init__(self, db: Database, lifecycle: Lifecycle, stats: Stats) -> None:
        self.db, self.lifecycle, self.stats = db, lifecycle, stats

    async def stands(self, model: ModelType, doc: Stored, rev: str | None) -> tuple[bool, str | None]:
        """Whether ``doc``, written as ``rev`` on fewer copies than asked, stands
        (answer it, provisional) or lost (withdrawn: the caller's write is re-read and
        answered like any conflict), and its revision. With ``rev`` None (a retried write
        that conflicted) it is first found by its signature among the leaves: (False,
        None) when it is not there (it did not land, or was built on: a plain conflict)."""
        leaves = [
            entry["ok"]
            for entry in await self.db.open_revs(doc["_id"], r=await self.db.copies(), history=True)
            if isinstance(entry.get("ok"), dict)
        ]
        if rev is None:
            rev = next((leaf["_rev"] for leaf in leaves if leaf.get("sig") == doc.get("sig")), None)
            if rev is None:
                return False, None
        self.stats.writes_below_quorum += 1
        live = [leaf for leaf in leaves if not leaf.get("_deleted")]
        if any(leaf["_rev"] != rev and descends(leaf, rev) for leaf in live):
            return True, rev  # someone built on it already: it took effect
        ours = next((leaf for leaf in live if leaf["_rev"] == rev), None)
        rivals = [leaf for leaf in self._verified(model, live) if leaf["_rev"] != rev]
        if not rivals and (ours is not None or doc.get("_deleted")):
            self.stats.last_copy_missing = time.monotonic()  # no race explains it: a copy did not answer
            return True, rev
        if model.conflict_policy is ConflictPolicy.MERGE and not doc.get("_deleted"):
            return True, rev  # every leaf's changes are merged
        if ours is None:  # a delete beside live leaves, or a leaf a merge removed for another's content
            return self._lost(doc, rev)
        if rules.base(model, [ours, *rivals])["_rev"] == rev:
            return True, rev
        [saved] = await self.db.save([self.lifecycle.tombstone(ours, Removed.WITHDRAWN)])
        if saved.rev is None or saved.accepted:  # not removed from every copy: not ours to decide
            log.info("document %s: revision %s lost a race; its withdrawal did not reach every copy", doc["_id"], rev)
            return True, rev
        return self._lost(doc, rev)

    def _lost(self, doc: Stored, rev: str) -> tuple[bool, str]:
        self.stats.races_withdrawn += 1
        log.info("document %s: revision %s lost a race to a write from the same revision", doc["_id"], rev)
        return False, rev

    def _verified(self, model: ModelType, leaves: list[Stored]) -> list[Stored]:
        """The leaves a merge would take part in: valid signatures, this type."""
        valid = []
        for leaf in leaves:
            try:
                self.lifecycle.check_signature(leaf)
            except (IntegrityViolation, KeyUnavailable):
                continue
            if model_of([model], leaf):
                valid.append(leaf)
        return valid
