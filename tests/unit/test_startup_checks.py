"""Startup checks without a server: --help and bad flags, keysets that could have been
swapped, a bad models file, ``version``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from support import SAMPLE_MODELS

from data_service import __version__
from data_service.keys import KeysDir


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "data_service", *args], capture_output=True, text=True, timeout=60)


def test_cli_help_and_bad_flags(keys_dir):
    helped = run_cli("--help")
    assert helped.returncode == 0 and "data-service serve" in helped.stdout and "--couchdb=URL" in helped.stdout
    leaked = run_cli("serve", f"--keys-dir={keys_dir}", "--couchdb=http://admin:hunter2@127.0.0.1:5984")
    assert leaked.returncode == 2 and "no credentials in the URL" in leaked.stderr
    assert "hunter2" not in leaked.stderr
    assert run_cli("serve", f"--keys-dir={keys_dir}", "--port=zero").returncode == 2
    no_keys = run_cli("serve", f"--keys-dir={keys_dir}/missing")
    assert no_keys.returncode == 2 and f"{keys_dir}/missing: cannot read" in no_keys.stderr
    for bad in ("--cursor-ttl=0", "--deployment-id=two words", "--deployment-id="):
        assert run_cli("serve", f"--keys-dir={keys_dir}", bad).returncode == 2, bad


def test_startup_refuses_keysets_that_could_have_been_swapped(tmp_path):
    """With a key-encryption key only encrypted keysets load: a cleartext one in their
    place (whoever can write the keys directory can sign forged documents with it) stops
    startup, as does a keyset file group or others may write. Exit 2, naming the file."""
    kek = tmp_path / "kek.json"
    assert run_cli("keys", "new-kek", f"--out={kek}").returncode == 0
    keys, forged = tmp_path / "keys", tmp_path / "forged"
    assert run_cli("keys", "create", f"--keys-dir={keys}", f"--kek-file={kek}").returncode == 0
    assert run_cli("keys", "create", f"--keys-dir={forged}").returncode == 0
    (keys / "signing.json").write_text((forged / "signing.json").read_text())
    swapped = run_cli("serve", f"--keys-dir={keys}", f"--kek-file={kek}", "--port=1")
    assert swapped.returncode == 2, swapped.stderr
    assert f"{keys}/signing.json: a cleartext keyset, but a key-encryption key is configured" in swapped.stderr
    (forged / "encryption.json").chmod(0o666)
    writable = run_cli("serve", f"--keys-dir={forged}", "--port=1")
    assert writable.returncode == 2 and f"{forged}/encryption.json: writable by group or others" in writable.stderr


def test_bad_models_file_stops_startup(tmp_path, keys_dir):
    models = tmp_path / "models.yaml"
    models.write_text(
        "types:\n  user:\n    version: '1.0'\n    properties:\n      email: {type: string, protection: rot13}\n"
    )
    result = run_cli("serve", f"--keys-dir={keys_dir}", f"--models={models}")
    assert result.returncode == 2
    assert "type 'user'" in result.stderr and "property 'email'" in result.stderr and "rot13" in result.stderr


def test_version_reports_models_digest_and_key_ids_never_keys(keys_dir):
    models = SAMPLE_MODELS
    plain = run_cli("--version")
    assert plain.returncode == 0 and plain.stdout == f"data-service {__version__}\n"
    full = run_cli("--version", f"--models={models}", f"--keys-dir={keys_dir}")
    assert full.returncode == 0, full.stderr
    lines = full.stdout.splitlines()
    assert lines[0] == f"data-service {__version__}"
    assert lines[1] == f"models sha256:{hashlib.sha256(models.read_bytes()).hexdigest()}"
    for info in KeysDir(keys_dir).list():
        assert f"keys {info.purpose}: primary " in full.stdout and str(info.key_id) in full.stdout
    for keyset in Path(keys_dir).glob("*.json"):  # no key material: the keysets' values never show
        for key in json.loads(keyset.read_text())["key"]:
            assert key["keyData"]["value"] not in full.stdout
