"""Configuration: one immutable value built from the command line (and env for secrets)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import secretfiles
from .couchdb.client import DEFAULT_TRANSPORT, TRANSPORTS
from .logs import LogFormat

PASSWORD_ENV = "DATA_SERVICE_COUCHDB_PASSWORD"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEPLOYMENT_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")


class ConfigError(ValueError):
    """A flag or file that makes starting impossible; the message says which."""


@dataclass(frozen=True)
class Config:
    couchdb_url: str = "http://127.0.0.1:5984"
    database: str = "data_service"
    listen: str = "127.0.0.1"
    port: int = 8080
    couchdb_user: str | None = None
    couchdb_password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    verify_tls: bool = True
    connect_timeout: float = 5.0
    request_timeout: float = 30.0
    max_connections: int = 100
    couchdb_transport: str = DEFAULT_TRANSPORT  # a name in couchdb.TRANSPORTS
    log_level: str = "info"
    log_format: LogFormat | None = None  # None: json unless the log goes to a terminal
    models_path: str | None = None
    max_body: int = 1024 * 1024
    keys_dir: str | None = None
    kek_file: str | None = None
    reconcile_interval: float = 60.0  # seconds between conflict sweeps in serve; 0: none
    warm_interval: float = 5.0  # seconds between passes of the index warmer in serve; 0: none
    idempotency_ttl: float = 86400.0  # seconds an Idempotency-Key is remembered
    max_bulk: int = 500  # items in one POST /v1/{type}/_bulk
    drain_delay: float = 0.0  # seconds serving goes on after SIGTERM while the application still calls
    drain_quiet: float = 2.0  # the delay ends once no request has been in flight this long; 0: never early
    drain_timeout: float = 8.0  # then, seconds in-flight requests get (below docker's 10 s stop grace)
    cursor_ttl: float = 3600.0  # seconds a query's next cursor stays valid
    deployment_id: str | None = None  # what signatures bind documents to; None: the database name
    accept_v1: bool = True  # read version 1 signatures and ciphertexts (False: --refuse-v1)
    bcrypt_queue: int = 64  # bcrypt jobs queued or running per process; more: 503 busy
    bcrypt_wait: float = 5.0  # seconds a bcrypt job may wait for a thread; longer: 503 busy
    api_token_file: str | None = None  # bearer tokens callers must send (callers.py); None: loopback only
    open_metrics: bool = False  # /_metrics without a token
    open_readiness: bool = False  # readiness (/_health?quick=false) without a token
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides the loopback ones
    max_header_size: int = 16 * 1024  # bytes of request line + headers
    idle_timeout: float = 60.0  # seconds a connection may wait for a request's headers
    body_timeout: float = 30.0  # seconds to receive a request body
    cache_mb: float = 64.0  # the read cache's size per worker; 0: no cache
    workers: int = 1  # serving processes forked after binding; the command line's default 0: one per CPU
    ops_listen: tuple[str, int] | None = None  # the probes-and-metrics listener (--ops-listen)
    max_streams: int = 32  # change streams (long polls, event streams) open at once per process; more: 503 busy

    @property
    def deployment(self) -> str:
        """What signatures and associated data name: the deployment id, else the database."""
        return self.deployment_id or self.database

    @property
    def couchdb_auth(self) -> tuple[str, str] | None:
        if self.couchdb_user is None:
            return None
        return (self.couchdb_user, self.couchdb_password or "")

    @classmethod
    def from_args(cls, args: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> Config:
        """Build from docopt's dict; raise ConfigError naming the bad flag."""
        url = args["--couchdb"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--couchdb: {url!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise ConfigError(
                "--couchdb: no credentials in the URL (they would show in the process list); "
                f"use --couchdb-user and --couchdb-password-file or ${PASSWORD_ENV}"
            )
        level = args["--log-level"].lower()
        if level not in LOG_LEVELS:
            raise ConfigError(f"--log-level: one of {', '.join(LOG_LEVELS)}")
        transport = args.get("--couchdb-transport") or DEFAULT_TRANSPORT
        if transport not in TRANSPORTS:
            raise ConfigError(f"--couchdb-transport: one of {', '.join(TRANSPORTS)}")
        log_format = args.get("--log-format")
        if log_format is not None and log_format not in set(LogFormat):
            raise ConfigError(f"--log-format: one of {', '.join(LogFormat)}")
        return cls(
            couchdb_url=url.rstrip("/"),
            database=args["--database"],
            listen=args["--listen"],
            port=_number(args, "--port", int),
            couchdb_user=args["--couchdb-user"],
            couchdb_password=_password(args["--couchdb-user"], args["--couchdb-password-file"], env),
            ca_file=args["--ca-file"],
            verify_tls=not args["--no-verify-tls"],
            connect_timeout=_number(args, "--connect-timeout", float),
            request_timeout=_number(args, "--request-timeout", float),
            max_connections=_number(args, "--max-connections", int),
            couchdb_transport=transport,
            log_level=level,
            log_format=LogFormat(log_format) if log_format else None,
            models_path=args["--models"],
            max_body=_number(args, "--max-body", int),
            keys_dir=args["--keys-dir"],
            kek_file=args["--kek-file"],
            reconcile_interval=_interval("--reconcile-interval", args.get("--reconcile-interval", "60")),
            warm_interval=_interval("--warm-interval", args.get("--warm-interval", "5")),
            max_bulk=_number(args, "--max-bulk", int) if args.get("--max-bulk") else 500,
            idempotency_ttl=_number(args, "--idempotency-ttl", float) if args.get("--idempotency-ttl") else 86400.0,
            drain_delay=_interval("--drain-delay", args.get("--drain-delay") or "0"),
            drain_quiet=_interval("--drain-quiet", args.get("--drain-quiet") or "2"),
            drain_timeout=_interval("--drain-timeout", args.get("--drain-timeout") or "8"),
            cursor_ttl=_number(args, "--cursor-ttl", float) if args.get("--cursor-ttl") else 3600.0,
            deployment_id=_deployment_id(args.get("--deployment-id")),
            accept_v1=not args.get("--refuse-v1"),
            bcrypt_queue=_number(args, "--bcrypt-queue", int) if args.get("--bcrypt-queue") else 64,
            bcrypt_wait=_number(args, "--bcrypt-wait", float) if args.get("--bcrypt-wait") else 5.0,
            api_token_file=args.get("--api-token-file"),
            open_metrics=bool(args.get("--open-metrics")),
            open_readiness=bool(args.get("--open-readiness")),
            allowed_hosts=tuple(h.strip() for h in (args.get("--allowed-hosts") or "").split(",") if h.strip()),
            max_header_size=_number(args, "--max-header-size", int) if args.get("--max-header-size") else 16 * 1024,
            idle_timeout=_number(args, "--idle-timeout", float) if args.get("--idle-timeout") else 60.0,
            body_timeout=_number(args, "--body-timeout", float) if args.get("--body-timeout") else 30.0,
            cache_mb=_megabytes(args.get("--cache-size", "64")),
            workers=_workers(args.get("--workers", "0")),
            ops_listen=_address("--ops-listen", args.get("--ops-listen")),
            max_streams=_number(args, "--max-streams", int) if args.get("--max-streams") else 32,
        )


def _number(args: Mapping[str, Any], flag: str, kind: type) -> Any:
    try:
        value = kind(args[flag])
    except (TypeError, ValueError):
        raise ConfigError(f"{flag}: {args[flag]!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{flag}: must be positive")
    return value


def _interval(flag: str, text: Any) -> float:
    """Seconds, 0 or more (0: none)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag}: {text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{flag}: seconds, 0 or more")
    return value


def _megabytes(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--cache-size: {text!r} is not a number") from None
    if not 0 <= value <= 1 << 20:
        raise ConfigError("--cache-size: megabytes, 0 (no cache) or more")
    return value


def _workers(text: Any) -> int:
    """A count, or 0 for one per CPU this process may run on."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--workers: {text!r} is not a whole number") from None
    if value < 0 or value > 256:
        raise ConfigError("--workers: 0 (one per CPU) to 256")
    return value or cpus()


def cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: those it may run on, capped by a container's CPU
    quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), rounded up."""
    count = len(os.sched_getaffinity(0))
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            fields = (cgroup / quota_file).read_text().split()
            if period_file is not None:
                fields.append((cgroup / period_file).read_text().strip())
            quota, period = int(fields[0]), int(fields[1])
        except (OSError, ValueError, IndexError):
            continue  # "max" (no quota), -1, or no such file
        if quota > 0 and period > 0:
            return max(1, min(count, -(-quota // period)))
    return count


def _address(flag: str, text: str | None) -> tuple[str, int] | None:
    """``ADDRESS:PORT`` (``[::]:9090`` for IPv6; an empty address: every interface)."""
    if text is None:
        return None
    address, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag}: {text!r} is not ADDRESS:PORT (e.g. 0.0.0.0:9090 or [::]:9090)")
    return address.strip("[]"), int(port)


def _deployment_id(text: str | None) -> str | None:
    if text is None:
        return None
    if not DEPLOYMENT_ID.match(text):
        raise ConfigError("--deployment-id: 1-200 characters, letters, digits and ._:/- (no spaces)")
    return text


def _password(user: str | None, file: str | None, env: Mapping[str, str]) -> str | None:
    """The CouchDB password: from the file (a secret file, ``secretfiles``) or the
    environment; ConfigError for a user without one (CouchDB would count every request
    with an empty password as a failed login, and lock the user out)."""
    if file:
        try:
            password = secretfiles.read_text(file).strip()
        except secretfiles.UnsafeSecret as exc:
            raise ConfigError(f"--couchdb-password-file: {exc}") from None
    else:
        password = env.get(PASSWORD_ENV, "")
    if user is not None and not password:
        source = f"--couchdb-password-file {file} is empty" if file else f"${PASSWORD_ENV} is not set or empty"
        raise ConfigError(f"--couchdb-user={user} needs a password: {source}")
    return password or None
