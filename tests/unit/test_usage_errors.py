"""Usage errors: one line naming the flag or command, exit 2; ``serve --help`` shows serve's
options only."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from support import one_line

COMMANDS = "one of install, keys, migrate, openapi, reconcile, reencrypt, serve, verify"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data_service", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), f"no command given: {COMMANDS}"),
        (("serve",), "serve needs --keys-dir=DIR (see data-service serve --help)"),
        (("serve", "--keys-dir=k", "--bogus"), "unknown option --bogus (see data-service --help)"),
        (("bogus",), f"unknown command 'bogus': {COMMANDS}"),
        (("keys",), "keys needs a command: one of create, disable, enable, list, new-kek, promote, rotate"),
        (("keys", "rotate", "--keys-dir=k"), "keys rotate needs --purpose=P (see data-service keys rotate --help)"),
        (("keys", "list", "--keys-dir=k", "--port=1"), "keys list does not take --port"),
        (("serve", "--keys-dir"), "--keys-dir needs a value (--keys-dir=...)"),
        (("serve", "--keys-dir=k", "extra"), "unexpected argument 'extra' after serve"),
        (("install", "--keys-dir=k", "--delete", "--yes"), "install needs --models=FILE"),
        (("serve", "--keys-dir=k", "--port=1", "--port=2"), "--port is given twice"),
        (("serve", "--keys-dir=k", "--ops-listen=9090"), "--ops-listen: '9090' is not ADDRESS:PORT"),
    ],
)
def test_usage_errors_are_one_line_naming_the_flag_or_command(args, message):
    result = cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert one_line(result.stderr).startswith(f"data-service: {message}")


def test_serve_help_shows_serve_options_only():
    result = cli("serve", "--help")
    assert result.returncode == 0 and result.stderr == ""
    text = result.stdout
    assert text.startswith("Usage:\n  data-service serve --keys-dir=DIR")
    for shown in ("--ops-listen=ADDRESS:PORT", "--drain-delay", "--api-token-file", "--couchdb-user", "--keys-dir"):
        assert shown in text
    for hidden in ("--service-user", "--seed", "--purpose", "--batch", "data-service install", "keys rotate"):
        assert hidden not in text
    assert len(text.splitlines()) < 120
    rotate = cli("keys", "rotate", "--help").stdout
    assert "--purpose=P" in rotate and "--listen" not in rotate and "Options of serve:" not in rotate
    whole = cli("--help").stdout
    assert re.search(r"^Options of install:$", whole, re.M) and "--ops-listen" in whole
