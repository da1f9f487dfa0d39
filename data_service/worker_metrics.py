"""``--workers``: one ``/_metrics`` scrape shows every worker.

The kernel hands a scrape to whichever worker accepts the connection, so each worker
publishes its exposition to a directory the parent made before forking (private,
0700, removed when the parent exits), every ``INTERVAL`` seconds, and the worker
answering a scrape adds its siblings' latest to its own: every series carries a
``worker`` label, a sibling's values are at most ``INTERVAL`` old. ``sum by`` the
other labels gives the whole sidecar; a restarted worker's counters start again from
zero, which Prometheus' ``rate`` treats as the reset it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

INTERVAL = 1.0  # seconds between a worker's snapshots


class WorkerMetrics:
    def __init__(self, directory: Path, worker: int) -> None:
        self.directory, self.worker = directory, worker

    def _path(self, worker: int) -> Path:
        return self.directory / f"worker-{worker}.prom"

    def publish(self, exposition: bytes) -> None:
        """Write this worker's snapshot (atomically: a reader sees the old or the new)."""
        partial = self.directory / f".worker-{self.worker}.partial"
        partial.write_bytes(exposition)
        os.replace(partial, self._path(self.worker))

    def merged(self, own: bytes) -> bytes:
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
        return generate_latest(_Families(families.values()))


class _Families:
    """What ``generate_latest`` reads: something with ``collect()``."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)
