"""``serve``'s process model: log in once, install if asked, bind the ports, then serve
in this process (``--workers=1``) or in N forked ones.

Before anything is bound the parent logs in to CouchDB once (``server.log_in``:
refused credentials stop here, exit 2) and runs the installer if asked; then it claims
and binds the ports (``listeners``: one socket per worker on each, ``SO_REUSEPORT``, one
data-service per port). With N workers it makes what they share — the write-counter
table (``cache.Stamps.shared``), the credential gate's state (``couchdb.GateState``),
the metrics directory — and forks. The kernel spreads new connections evenly over the
workers' sockets (a restarted worker takes over its socket and the connections waiting
on it). Each worker is a whole ``serve``: its own CouchDB connections, change feed, read
cache and readiness; ``/_metrics`` answers every worker's series, labelled ``worker``
(``worker_metrics``), and liveness fails while any worker has stopped publishing them.
Worker 0 alone runs the conflict sweeper, the index warmer and the expired-key cleanup.

The parent only supervises: SIGTERM / SIGINT close its copies of the sockets and are
passed to every worker (each drains, and closes its own when its drain delay is over),
SIGHUP too (each reloads its secrets), and a worker that dies otherwise is started
again under its index.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from . import listeners, worker_metrics
from .cache import Stamps
from .config import Config, ConfigError
from .couchdb import GateState
from .server import preflight, prepare, serve

log = logging.getLogger("data_service")

RESTART_PAUSE = 1.0  # seconds before a crashed worker is started again
PR_SET_PDEATHSIG = 1


def run(config: Config, auto_install: bool = False) -> None:
    """Serve on uvloop: in this process, or in ``config.workers`` forked ones. Startup
    errors (ConfigError, ...) are raised before anything listens."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve (or the supervisor) handles it: never fatal
    preflight(config)  # a startup error stops here, once, not in every worker restarted forever
    asyncio.run(prepare(config, auto_install))
    shared = shared_dir(config.workers) if config.workers > 1 else None
    bound = listeners.bind(config, config.workers)
    if shared is not None:
        run_workers(config, bound, shared)
    else:
        uvloop.run(serve(config, bound.of(0)))


def _die_with_parent() -> None:
    """A worker whose parent was killed (SIGKILL: no chance to pass anything on) gets
    SIGTERM and drains, rather than serving on unsupervised (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def shared_dir(workers: int, parents: tuple[str | None, ...] = (None, "/dev/shm")) -> Path:
    """A new private (0700) directory for the files the workers share (metrics, the
    documents' lock file): in the temporary directory (``TMPDIR``, ``/tmp``, ...), else in
    ``/dev/shm`` (a read-only root without a ``/tmp`` volume). ConfigError if neither."""
    for parent in parents:
        try:
            return Path(tempfile.mkdtemp(prefix="data-service-metrics-", dir=parent))
        except OSError:
            continue
    raise ConfigError(
        f"--workers={workers}: no writable directory for the workers' shared files (tried TMPDIR, /tmp and "
        "/dev/shm); mount a writable /tmp (a tmpfs or an emptyDir) or set TMPDIR"
    )


def run_workers(config: Config, bound: listeners.Listeners, metrics_dir: Path) -> None:
    stamps = Stamps.shared(config.workers)
    gate = GateState(shared=True)
    children: dict[int, int] = {}  # pid → worker index
    stopping = False

    parent = os.getpid()

    def start(index: int) -> None:
        worker_metrics.starting(metrics_dir, index)  # liveness counts from now
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            if os.getppid() != parent:  # gone before the line above took effect
                os._exit(0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve handles it
            code = 0
            try:
                bound.close(keep=index)  # the other workers' sockets
                mine = stamps.as_worker(index)
                uvloop.run(
                    serve(config, bound.of(index), stamps=mine, worker=index, metrics_dir=metrics_dir, gate=gate)
                )
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        children[pid] = index

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        bound.close()  # our copies: once the draining workers close theirs, connecting is refused
        pass_on(signum, frame)

    def pass_on(signum: int, frame: object) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, pass_on)  # each worker reloads its secrets
    for index in range(config.workers):
        start(index)
    log.info("%d workers serving on %s:%d", config.workers, config.listen, config.port)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index = children.pop(pid)
        if stopping:
            continue
        log.warning("worker %d (pid %d) exited with status %d; starting it again", index, pid, status)
        time.sleep(RESTART_PAUSE)
        if not stopping:
            start(index)
    bound.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
