"""``--workers``: one ``/_metrics`` scrape shows every worker.

The kernel hands a scrape to whichever worker accepts the connection, so each worker
publishes its exposition to a directory the parent made before forking (private,
0700, removed when the parent exits), every ``INTERVAL`` seconds, and the worker
answering a scrape adds its siblings' latest to its own: every series carries a
``worker`` label, a sibling's values are at most ``INTERVAL`` old. ``sum by`` the
other labels gives the whole sidecar; a restarted worker's counters start again from
zero, which Prometheus' ``rate`` treats as the reset it is. The merged families are
encoded in whatever format the scrape asked for (``metrics.Metrics.exposition``).

The snapshots are also the workers' heartbeat: the parent writes an empty one when it
starts a worker, the worker replaces it every ``INTERVAL``; a snapshot older than
``STALE_AFTER`` is a worker whose event loop is stuck or that keeps dying, and liveness
(``/_health``) fails while there is one, whichever worker answers the probe.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

INTERVAL = 1.0  # seconds between a worker's snapshots
STALE_AFTER = 10.0  # seconds without a snapshot after which a worker counts as stalled


def _path(directory: Path, worker: int) -> Path:
    return directory / f"worker-{worker}.prom"


def starting(directory: Path, worker: int) -> None:
    """The parent, (re)starting ``worker``: an empty snapshot, so its heartbeat counts from now."""
    _path(directory, worker).write_bytes(b"")


class WorkerMetrics:
    def __init__(self, directory: Path, worker: int) -> None:
        self.directory, self.worker = directory, worker

    def publish(self, exposition: bytes) -> None:
        """Write this worker's snapshot (atomically: a reader sees the old or the new)."""
        partial = self.directory / f".worker-{self.worker}.partial"
        partial.write_bytes(exposition)
        os.replace(partial, _path(self.directory, self.worker))

    def stalled(self) -> list[int]:
        """The workers whose latest snapshot is older than ``STALE_AFTER``."""
        now, late = time.time(), []
        for path in self.directory.glob("worker-*.prom"):
            with contextlib.suppress(OSError):  # being replaced just now
                if now - path.stat().st_mtime > STALE_AFTER:
                    late.append(int(path.stem.partition("-")[2]))
        return sorted(late)

    def merged(self, own: bytes) -> _Families:
        """``own`` exposition and every sibling's latest snapshot, labelled by worker."""
        texts = {self.worker: own.decode()}
        for path in self.directory.glob("worker-*.prom"):
            worker = int(path.stem.partition("-")[2])
            if worker != self.worker:
                with contextlib.suppress(OSError):  # a sibling replacing it just now
                    texts[worker] = path.read_text()
        families: dict[str, Metric] = {}
        for worker, text in sorted(texts.items()):
            for family in text_string_to_metric_families(text):
                into = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type, family.unit)
                )
                for sample in family.samples:
                    labels = sample.labels if "worker" in sample.labels else {**sample.labels, "worker": str(worker)}
                    into.samples.append(sample._replace(labels=labels))
        return _Families(families.values())


class _Families:
    """What the exposition encoders read: something with ``collect()``."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)
