"""``--workers N``: N serving processes on one port, forked after it is bound.

The parent binds the listening socket, makes the shared write-counter table
(``cache.Stamps.shared``), runs the installer if asked, and forks. The kernel spreads
connections over the workers. Each worker is a whole ``serve``: its own CouchDB
connections, change feed, read cache and readiness; ``/_metrics`` answers every
worker's series, labelled ``worker`` (``worker_metrics``).
Worker 0 alone runs the conflict sweeper and the expired-key cleanup.

The parent only supervises: SIGTERM / SIGINT are passed to every worker (each
drains), SIGHUP too (each reloads its token file), and a worker that dies otherwise is started again under its index.
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
from tornado.netutil import bind_sockets

from .cache import Stamps
from .config import Config

log = logging.getLogger("data_service")

RESTART_PAUSE = 1.0  # seconds before a crashed worker is started again
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """A worker whose parent was killed (SIGKILL: no chance to pass anything on) gets
    SIGTERM and drains, rather than serving on unsupervised (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def run_workers(config: Config, auto_install: bool) -> None:
    from .server import install_first, preflight, serve

    preflight(config)  # a startup error stops here, once, not in every worker restarted forever
    if auto_install:
        asyncio.run(install_first(config))
    sockets = bind_sockets(config.port, config.listen)
    stamps = Stamps.shared(config.workers)
    metrics_dir = Path(tempfile.mkdtemp(prefix="data-service-metrics-"))  # 0700
    children: dict[int, int] = {}  # pid → worker index
    stopping = False

    parent = os.getpid()

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            if os.getppid() != parent:  # gone before the line above took effect
                os._exit(0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                mine = stamps.as_worker(index)
                uvloop.run(serve(config, sockets=sockets, stamps=mine, worker=index, metrics_dir=metrics_dir))
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
        for sock in sockets:  # ours too: once the draining workers close theirs, connecting is refused
            sock.close()
        pass_on(signum, frame)

    def pass_on(signum: int, frame: object) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, pass_on)  # each worker reloads its token file
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
    for sock in sockets:
        sock.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
