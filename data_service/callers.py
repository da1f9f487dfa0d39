"""Who may call the service: bearer tokens, the routes open without one, and the Host
allowlist that keeps a browser page from reaching a loopback sidecar by DNS rebinding.

The decision (``Door.admit``) is pure; only ``TokenFile`` reads a file (at startup and
on SIGHUP). Tokens are compared in constant time against every token, and never logged.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError

log = logging.getLogger("data_service.callers")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]{16,512}=*$")  # RFC 6750 b64token, at least 16 characters


class Access(enum.Enum):
    """What a request asks for; each kind may be opened separately."""

    LIVENESS = "liveness"  # always open: a probe that carries no secret
    READINESS = "readiness"  # open with --open-readiness
    METRICS = "metrics"  # open with --open-metrics
    API = "api"  # everything else: a token when a token file is configured


def parse_tokens(text: str, source: str = "token file") -> frozenset[str]:
    """One token per line; blank lines and ``#`` comments ignored. ConfigError names the
    line (never its content) of a malformed token, or an empty file."""
    tokens = set()
    for number, line in enumerate(text.splitlines(), 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if not TOKEN.match(token):
            raise ConfigError(f"{source}: line {number} is not a token (16-512 characters of A-Z a-z 0-9 . _ ~ + / -)")
        tokens.add(token)
    if not tokens:
        raise ConfigError(f"{source}: no tokens (one per line; blank lines and # comments are ignored)")
    return frozenset(tokens)


class TokenFile:
    """The tokens of ``--api-token-file``; ``reload`` (SIGHUP) keeps the old ones when the
    file has become unreadable or malformed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tokens = self._read()

    def _read(self) -> frozenset[str]:
        try:
            text = Path(self.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--api-token-file: cannot read {self.path}: {getattr(exc, 'strerror', exc)}") from None
        return parse_tokens(text, f"--api-token-file {self.path}")

    def reload(self) -> bool:
        """Read the file again; False (and a logged error) keeps the tokens loaded before."""
        try:
            tokens = self._read()
        except ConfigError as exc:
            log.error("api tokens not reloaded, keeping %d: %s", len(self.tokens), exc)
            return False
        self.tokens = tokens
        log.info("api tokens reloaded: %d tokens", len(tokens))
        return True


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def matches(token: str, tokens: Iterable[str]) -> bool:
    """Constant time per token, and every token is compared: timing says nothing about
    which token (or how much of one) matched."""
    given = token.encode()
    found = False
    for known in tokens:
        found |= hmac.compare_digest(given, known.encode())
    return found


def is_loopback(listen: str) -> bool:
    if listen.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(listen.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str:
    """``Host`` without its port, lower-case (``[::1]:8080`` → ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Refusal(enum.Enum):
    """Why a request is turned away; the values are error codes (``problems.TABLE``)."""

    HOST = "host_not_allowed"
    TOKEN = "unauthorized"


@dataclass(frozen=True)
class Door:
    """The policy: ``tokens`` None means no token file (then the service listens on
    loopback only); ``allowed_hosts`` None means any Host (a non-loopback listener
    without --allowed-hosts, where tokens guard it)."""

    tokens: TokenFile | None = None
    allowed_hosts: frozenset[str] | None = LOOPBACK_NAMES
    open_metrics: bool = False
    open_readiness: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Door:
        """ConfigError when a non-loopback listener has no token file."""
        loopback = is_loopback(config.listen)
        if not loopback and not config.api_token_file:
            raise ConfigError(
                f"--listen={config.listen} is not a loopback address: without --api-token-file anyone "
                "who can reach it could read and write every document. Give --api-token-file=FILE "
                "or listen on 127.0.0.1 (the application shares the sidecar's network namespace)"
            )
        extra = frozenset(host_name(h) for h in config.allowed_hosts)
        allowed = LOOPBACK_NAMES | extra if loopback or extra else None
        return cls(
            tokens=TokenFile(config.api_token_file) if config.api_token_file else None,
            allowed_hosts=allowed,
            open_metrics=config.open_metrics,
            open_readiness=config.open_readiness,
        )

    def admit(self, access: Access, host: str, authorization: str | None) -> Refusal | None:
        """None to let the request in; else why not. Host first: a rebound browser page
        learns nothing, not even whether a token would be needed."""
        if self.allowed_hosts is not None and host_name(host) not in self.allowed_hosts:
            return Refusal.HOST
        if self.tokens is None or access is Access.LIVENESS:
            return None
        if (access is Access.METRICS and self.open_metrics) or (access is Access.READINESS and self.open_readiness):
            return None
        token = bearer(authorization)
        return None if token is not None and matches(token, self.tokens.tokens) else Refusal.TOKEN
