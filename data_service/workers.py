"""``--workers N``: N serving processes on one port, forked after it is bound.

The parent binds one listening socket per worker on the port (``SO_REUSEPORT``), makes
the shared write-counter table (``cache.Stamps.shared``), runs the installer if asked,
and forks. The kernel spreads new connections evenly over the workers' sockets (a
restarted worker takes over its socket and the connections waiting on it). Each
worker is a whole ``serve``: its own CouchDB connections, change feed, read cache and
readiness; ``/_metrics`` answers every worker's series, labelled ``worker``
(``worker_metrics``). Worker 0 alone runs the conflict sweeper, the index warmer and
the expired-key cleanup.

The parent only supervises: SIGTERM / SIGINT close its sockets and are passed to every
worker (each drains), SIGHUP too (each reloads its token file), and a worker that dies
otherwise is started again under its index.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
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


def close(sockets: list[list[socket.socket]]) -> None:
    for group in sockets:
        for sock in group:
            sock.close()


def run_workers(config: Config, auto_install: bool) -> None:
    from .server import install_first, preflight, serve

    preflight(config)  # a startup error stops here, once, not in every worker restarted forever
    if auto_install:
        asyncio.run(install_first(config))
    # one listening socket per worker on the one port (SO_REUSEPORT): the kernel spreads new
    # connections evenly; one shared socket lets whichever worker wakes first take them all
    first = bind_sockets(config.port, config.listen, reuse_port=True)
    port = first[0].getsockname()[1]  # the one chosen when --port=0
    sockets = [first, *(bind_sockets(port, config.listen, reuse_port=True) for _ in range(config.workers - 1))]
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
                close([group for other, group in enumerate(sockets) if other != index])  # theirs
                mine = stamps.as_worker(index)
                uvloop.run(serve(config, sockets=sockets[index], stamps=mine, worker=index, metrics_dir=metrics_dir))
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
        close(sockets)  # ours too: once the draining workers close theirs, connecting is refused
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
    close(sockets)
    shutil.rmtree(metrics_dir, ignore_errors=True)
