"""Who may call the service: bearer tokens, the routes open without one, and the Host
allowlist that keeps a browser page from reaching a loopback sidecar by DNS rebinding.

The decision (``Door.admit``) is pure; only ``TokenFile`` reads a file (a secret file,
``secretfiles``: at startup, on SIGHUP and when it changes on disk). Tokens are compared
as HMAC digests of one length, in constant time against every token, and never logged.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from . import secretfiles
from .config import Config, ConfigError
from .problems import Code

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


DIGEST_KEY = secrets.token_bytes(32)  # per process: what tokens are compared as (``digest``)


def digest(token: str) -> bytes:
    """A token as compared: HMAC-SHA256 under a key of this process, 32 bytes whatever
    the token's length, so the comparison's time says nothing about that length."""
    return hmac.new(DIGEST_KEY, token.encode(), hashlib.sha256).digest()


class TokenFile:
    """The tokens of ``--api-token-file``, kept as digests; read again on SIGHUP or when
    the file changes (``reloads``), which keeps the old ones when the file has become
    unreadable, unsafe or malformed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tokens = self.read()

    def read(self) -> frozenset[bytes]:
        """The file's tokens now (as digests); ConfigError if it cannot be used."""
        try:
            text = secretfiles.read_text(self.path)
        except secretfiles.UnsafeSecret as exc:
            raise ConfigError(f"--api-token-file: {exc}") from None
        return frozenset(digest(token) for token in parse_tokens(text, f"--api-token-file {self.path}"))

    def use(self, tokens: frozenset[bytes]) -> None:
        """Tokens read again (SIGHUP, or the file changed: ``reloads``)."""
        self.tokens = tokens
        log.info("api tokens reloaded: %d tokens", len(tokens))


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def matches(token: str, digests: Iterable[bytes]) -> bool:
    """Whether ``token``'s digest is one of ``digests``: equal-length digests compared
    in constant time, every one of them, so timing says nothing about which token matched,
    how much of one, or how long the tokens are."""
    given = digest(token)
    found = False
    for known in digests:
        found |= hmac.compare_digest(given, known)
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
    """Why a request is turned away; the values are error codes (``problems.Code``)."""

    HOST = Code.HOST_NOT_ALLOWED
    TOKEN = Code.UNAUTHORIZED


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
