"""What runs beside the scale benchmark's requests: the whole-database jobs as
``data-service`` commands (their rate from their own progress line), and the sidecar's
RSS sampled throughout."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from typing import Any

from .couch import Couch
from .sidecar import SIDECAR, Sidecar, sidecar_env

DONE = re.compile(r"^(\w+): (\d+)/\d+ documents \(\d+%\)(?:, \d+ docs/s)?, ([\d.]+) s$")


def job(couch: Couch, name: str, *flags: str) -> dict[str, Any]:
    """``data-service NAME FLAGS`` with its progress passed through; docs/s from its last
    progress line (``name: N/M documents (x%), R docs/s, T s``): the job alone, not the
    command's start-up."""
    proc = subprocess.Popen(
        [str(SIDECAR), name, *flags],
        env=sidecar_env(couch),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = None
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        sys.stderr.write(f"  {line}")
        if (found := DONE.match(line.strip())) and found.group(1) == name:
            done = found
    output = proc.stdout.read()
    code = proc.wait()
    if done is None:
        raise RuntimeError(f"data-service {name} exited {code} without its last progress line:\n{output[-2000:]}")
    documents, seconds = int(done.group(2)), float(done.group(3))
    return {
        "documents": documents,
        "seconds": seconds,
        "docs_per_s": round(documents / max(seconds, 1e-9), 1),
        "exit": code,
        "summary": output.strip().splitlines()[-1:],
    }


class RssSampler:
    """The sidecar's RSS (its largest worker) every ``every`` seconds, in a thread: the most
    since the last ``take``."""

    def __init__(self, sidecar: Sidecar, every: float = 1.0) -> None:
        self.sidecar, self.every = sidecar, every
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.most = max(self.most, self.sidecar.memory()["rss_kib"])
            except RuntimeError:
                return  # the sidecar is gone: the run reports it

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def take(self) -> dict[str, float]:
        now = self.sidecar.memory()["rss_kib"]
        most, self.most = max(self.most, now), now
        return {"rss_mib": round(now / 1024, 1), "rss_max_mib": round(most / 1024, 1)}
