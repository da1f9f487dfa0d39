"""The listening sockets of ``serve``, bound before anything is forked: the data port
(``--listen``/``--port``) and the ops port (``--ops-listen``), one socket per worker on
each (``SO_REUSEPORT``: the kernel spreads connections over the workers).

``SO_REUSEPORT`` also lets a *second* process of the same user bind the same port, and
then the kernel splits connections between two services that may have other models,
databases or tokens. So each port is first claimed with a lock: an abstract-namespace
Unix socket named after the port (``@data-service/tcp/PORT``). Abstract sockets live in
the network namespace, as TCP ports do (a pod's containers share one), vanish with the
last process holding them (no stale lock files after a crash), and the holder's pid can
be asked for (``SO_PEERCRED``). A port some other program holds is refused by the bind
itself. Every failure is a ConfigError naming the flag: one line, exit 2.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from dataclasses import dataclass, field

from tornado.netutil import bind_sockets

from .config import Config, ConfigError

LOCK_NAME = "\0data-service/tcp/{port}"


@dataclass
class Listeners:
    """Per worker, its data sockets and its ops sockets (none without ``--ops-listen``)."""

    data: list[list[socket.socket]]
    ops: list[list[socket.socket]]
    port: int
    locks: list[socket.socket] = field(default_factory=list)

    def of(self, worker: int) -> tuple[list[socket.socket], list[socket.socket]]:
        return self.data[worker], self.ops[worker]

    def close(self, keep: int | None = None) -> None:
        """Close every worker's sockets but ``keep``'s; the locks stay with the process."""
        for worker, (data, ops) in enumerate(zip(self.data, self.ops, strict=True)):
            if worker != keep:
                for sock in data + ops:
                    sock.close()


def bind(config: Config, workers: int) -> Listeners:
    """Claim and bind the data port, and the ops port if any, ``workers`` sockets each."""
    if config.ops_listen is not None and config.ops_listen[1] == config.port:
        raise ConfigError(f"--ops-listen: port {config.port} is the data port (--port); give it another one")
    data, data_lock = _bind_port("--port", config.listen, config.port, workers)
    if config.ops_listen is None:
        return Listeners(data, [[] for _ in range(workers)], config.port, [data_lock])
    try:
        ops, ops_lock = _bind_port("--ops-listen", *config.ops_listen, workers)
    except BaseException:
        data_lock.close()
        for group in data:
            for sock in group:
                sock.close()
        raise
    return Listeners(data, ops, config.port, [data_lock, ops_lock])


def _bind_port(flag: str, address: str, port: int, workers: int) -> tuple[list[list[socket.socket]], socket.socket]:
    lock = claim(flag, address, port)
    try:
        return [_bind(flag, address, port) for _ in range(workers)], lock
    except BaseException:
        lock.close()
        raise


def claim(flag: str, address: str, port: int) -> socket.socket:
    """The lock on ``port``: held until the process (and its forked workers) exit."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(LOCK_NAME.format(port=port))
    except OSError as exc:
        lock.close()
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(f"{flag}: cannot claim port {port}: {exc.strerror}") from None
        holder = _holder(port)
        raise ConfigError(
            f"{flag}: port {port} is in use by another data-service{holder} (on {address or '*'}:{port}); "
            "one data-service per port"
        ) from None
    lock.listen(1)
    return lock


def _holder(port: int) -> str:
    """`` (pid N)`` of the process holding the lock, if the kernel says."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.connect(LOCK_NAME.format(port=port))
        pid, _, _ = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return f" (pid {pid})"
    return ""


def _bind(flag: str, address: str, port: int) -> list[socket.socket]:
    try:
        return bind_sockets(port, address or None, reuse_port=True)
    except socket.gaierror as exc:
        raise ConfigError(f"{flag}: {address!r} is not an address ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "in use by another program"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = f"{address} is not an address of this host"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges)"
        else:
            reason = exc.strerror or str(exc)
        raise ConfigError(f"{flag}: cannot listen on {address or '*'}:{port}: {reason}") from None
