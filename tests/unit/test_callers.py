"""Who may call: bearer tokens (two at once, rotated on SIGHUP), the open liveness route,
metrics and readiness opened by flag, the Host allowlist, and no open non-loopback listener; through a running sidecar:
tests/server/test_callers_http.py."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from support.callers import ONE, TWO, token_file

from data_service.callers import LOOPBACK_NAMES, Access, Door, Refusal, bearer, digest, host_name, is_loopback, matches
from data_service.callers import parse_tokens as tokens_of
from data_service.config import ConfigError

# -- the pure parts -----------------------------------------------------------------


def test_token_file_lines():
    assert tokens_of(f"# comment\n\n  {ONE}  \n{TWO}\n") == {ONE, TWO}
    with pytest.raises(ConfigError, match="line 2 is not a token") as bad:
        tokens_of(f"{ONE}\nshort\n")
    assert "short" not in str(bad.value)  # the message names the line, never its content
    with pytest.raises(ConfigError, match="no tokens"):
        tokens_of("# nothing\n\n")


def test_bearer_and_constant_time_match():
    assert bearer(f"Bearer {ONE}") == ONE and bearer(f"bearer  {ONE} ") == ONE
    assert bearer(None) is None and bearer("Basic abc") is None and bearer("Bearer ") is None
    known = {digest(ONE), digest(TWO)}
    assert matches(ONE, known) and matches(TWO, known) and len({len(d) for d in known}) == 1
    assert not matches(ONE[:-1], known) and not matches(ONE + "x", known) and not matches(ONE, set())


def test_loopback_and_host_names():
    assert all(is_loopback(a) for a in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(a) for a in ("0.0.0.0", "::", "10.0.0.5", "", "sidecar.example"))
    assert host_name("LocalHost:8080") == "localhost" and host_name("[::1]:80") == "[::1]"
    assert host_name("[::1]") == "[::1]" and host_name("127.0.0.1") == "127.0.0.1"


def test_door_decisions(tmp_path):
    from data_service.callers import TokenFile

    open_door = Door()  # loopback, no tokens
    assert open_door.admit(Access.API, "127.0.0.1:8080", None) is None
    assert open_door.admit(Access.LIVENESS, "evil.example:8080", None) is Refusal.HOST
    tokens = TokenFile(str(token_file(tmp_path, ONE)))
    guarded = Door(tokens=tokens, allowed_hosts=None)
    assert guarded.admit(Access.API, "sidecar.internal", f"Bearer {ONE}") is None
    assert guarded.admit(Access.API, "sidecar.internal", f"Bearer {TWO}") is Refusal.TOKEN
    assert guarded.admit(Access.LIVENESS, "sidecar.internal", None) is None
    assert guarded.admit(Access.METRICS, "x", None) is Refusal.TOKEN
    assert replace(guarded, open_metrics=True).admit(Access.METRICS, "x", None) is None
    assert replace(guarded, open_readiness=True).admit(Access.READINESS, "x", None) is None
    assert replace(guarded, open_readiness=True).admit(Access.METRICS, "x", None) is Refusal.TOKEN
    assert Door(tokens=tokens, allowed_hosts=LOOPBACK_NAMES).admit(Access.API, "evil", f"Bearer {ONE}") is (
        Refusal.HOST
    )


# -- over HTTP ----------------------------------------------------------------------


def test_a_non_loopback_listener_without_tokens_refuses_to_start(keys_dir, tmp_path):
    def serve(*flags: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "data_service", "serve", f"--keys-dir={keys_dir}", *flags]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    refused = serve("--listen=0.0.0.0", "--port=1")
    assert refused.returncode == 2 and "--listen=0.0.0.0 is not a loopback address" in refused.stderr
    assert "--api-token-file" in refused.stderr and "Traceback" not in refused.stderr
    workers = serve("--listen=0.0.0.0", "--port=1", "--workers=2")  # one exit in the parent, no restarted workers
    assert workers.returncode == 2 and "is not a loopback address" in workers.stderr
    unreadable = serve("--listen=0.0.0.0", f"--api-token-file={tmp_path}/missing")
    assert unreadable.returncode == 2 and unreadable.stderr.startswith("data-service: --api-token-file: ")
    assert "missing: cannot read (No such file or directory)" in unreadable.stderr
