"""The secret-file rule (``data_service/secretfiles.py``, docs/security.md, "Secret files") for
every secret the service reads — keysets and their directory, the KEK, the API token
file, the CouchDB password file — on files laid out exactly like a Kubernetes Secret
volume, and keyset writes that cannot be redirected or torn.

Building a Secret volume needs root (files owned by root and by other users): those
tests are marked ``root`` and deselected elsewhere; the rule's decisions for a non-root
process are checked by passing that process's uid (``euid=``)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from support.secret_volumes import (
    APP_UID,
    AS_APP,
    FS_GROUP,
    TOKEN,
    keyset_files,
    secret_volume,
    traversable_directory,
)

from data_service import keys as keys_module
from data_service import secretfiles
from data_service.callers import TokenFile
from data_service.config import Config, ConfigError
from data_service.keys import KeysDir, KeysetError, kek_from, new_kek
from data_service.protection import Keyring


@pytest.fixture
def base():
    with traversable_directory() as directory:
        yield directory


# -- the rule, as a non-root process (root-owned files) -------------------------------


@pytest.mark.root
@pytest.mark.parametrize("mode", [0o444, 0o440, 0o400])
def test_a_secret_volume_is_accepted(base, mode):
    volume = secret_volume(base / "secret", {"token": f"{TOKEN}\n".encode()}, mode)
    assert secretfiles.read(volume / "token", euid=APP_UID) == f"{TOKEN}\n".encode()
    assert stat.S_ISDIR(secretfiles.check(volume, directory=True, euid=APP_UID).st_mode)


@pytest.mark.root
def test_anything_another_user_can_write_is_refused(base):
    volume = secret_volume(base / "secret", {"token": TOKEN.encode()})
    target = volume / "..2026_01_01_00_00_00.000000001" / "token"
    os.chmod(target, 0o460)  # group-writable (defaultMode 0660 would do that)
    with pytest.raises(secretfiles.UnsafeSecret, match=r"token: writable by group or others \(mode 0460\)"):
        secretfiles.read(volume / "token", euid=APP_UID)
    os.chmod(target, 0o440)
    os.chown(target, 4242, FS_GROUP)  # another user's file
    with pytest.raises(secretfiles.UnsafeSecret, match="owned by uid 4242, neither root nor this process's user"):
        secretfiles.read(volume / "token", euid=APP_UID)
    os.chown(target, 0, FS_GROUP)
    os.lchown(volume / "..data", 4242, -1)  # a link in the chain owned by another user
    with pytest.raises(secretfiles.UnsafeSecret, match=r"\.\.data: owned by uid 4242"):
        secretfiles.read(volume / "token", euid=APP_UID)
    os.lchown(volume / "..data", 0, 0)
    os.chmod(volume / "..2026_01_01_00_00_00.000000001", 0o775)  # a directory on the way, group-writable
    with pytest.raises(secretfiles.UnsafeSecret, match=r"000000001: writable by group or others \(mode 0775\)"):
        secretfiles.read(volume / "token", euid=APP_UID)
    os.chmod(volume / "..2026_01_01_00_00_00.000000001", 0o755)
    os.chmod(base, 0o777)  # an ancestor anyone may write (not sticky): it could be renamed away
    with pytest.raises(secretfiles.UnsafeSecret, match=f"{base}: writable by group or others"):
        secretfiles.read(volume / "token", euid=APP_UID)
    os.chmod(base, 0o755)
    assert secretfiles.read(volume / "token", euid=APP_UID) == TOKEN.encode()


@pytest.mark.root
def test_files_of_the_process_own_user_must_be_private(base):
    own = base / "token"
    own.write_text(TOKEN)
    os.chown(own, APP_UID, APP_UID)
    for mode in (0o644, 0o640, 0o604):
        os.chmod(own, mode)
        with pytest.raises(secretfiles.UnsafeSecret, match=r"group or others may access it .*must be 0600 or 0400"):
            secretfiles.read(own, euid=APP_UID)
    for mode in (0o600, 0o400):
        os.chmod(own, mode)
        assert secretfiles.read(own, euid=APP_UID) == TOKEN.encode()
    os.chmod(own, 0o644)  # root, reading a root-owned 0644 file, holds it to the same rule
    os.chown(own, 0, 0)
    with pytest.raises(secretfiles.UnsafeSecret, match="must be 0600 or 0400"):
        secretfiles.read(own, euid=0)


def test_not_a_regular_file_and_missing_files(tmp_path):
    with pytest.raises(secretfiles.UnsafeSecret, match="not a regular file"):
        secretfiles.check(tmp_path)
    with pytest.raises(secretfiles.UnsafeSecret, match=r"cannot read \(Is a directory\)"):
        secretfiles.read(tmp_path)
    with pytest.raises(secretfiles.UnsafeSecret, match=r"missing: cannot read \(No such file or directory\)"):
        secretfiles.read(tmp_path / "missing")
    loop = tmp_path / "loop"
    os.symlink("loop", loop)
    with pytest.raises(secretfiles.UnsafeSecret, match="too many symbolic links"):
        secretfiles.check(loop)


def test_a_sticky_world_writable_directory_is_passed_through(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: only an entry's owner may rename or remove it
    secret = shared / "pw"
    secret.write_text("x")
    secret.chmod(0o600)
    assert secretfiles.read(secret) == b"x"
    shared.chmod(0o777)  # without the sticky bit anyone could swap the file
    with pytest.raises(secretfiles.UnsafeSecret, match="writable by group or others"):
        secretfiles.read(secret)


def test_fingerprints_change_with_the_link_swap(tmp_path):
    first = tmp_path / "v1"
    second = tmp_path / "v2"
    for directory in (first, second):
        directory.mkdir()
        (directory / "token").write_text(TOKEN)
    os.symlink("v1", tmp_path / "..data")
    before = secretfiles.fingerprint([tmp_path / "..data" / "token"])
    os.symlink("v2", tmp_path / "..tmp")
    os.rename(tmp_path / "..tmp", tmp_path / "..data")  # same bytes, same size: another inode
    assert secretfiles.fingerprint([tmp_path / "..data" / "token"]) != before
    assert secretfiles.fingerprint([tmp_path / "missing"]) == (None,)


# -- every secret the service reads goes through it ------------------------------------


def test_every_secret_file_is_checked(tmp_path):
    """Issue 22 #5: a keyset readable by others loaded, a world-writable token file was
    accepted, the KEK and password files were not checked at all."""
    keys = KeysDir(tmp_path / "keys")
    keys.create()
    keys.path("signing").chmod(0o644)
    with pytest.raises(KeysetError, match=r"signing\.json: group or others may access it"):
        Keyring(keys, "db")
    keys.path("signing").chmod(0o600)
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o666)
    with pytest.raises(ConfigError, match=r"--api-token-file: .*tokens: writable by group or others"):
        TokenFile(str(tokens))
    kek = tmp_path / "kek"
    kek.write_text(new_kek())
    kek.chmod(0o640)
    with pytest.raises(KeysetError, match=r"--kek-file: .*kek: group or others may access it"):
        kek_from(str(kek))
    password = tmp_path / "pw"
    password.write_text("secret\n")
    password.chmod(0o620)
    args = {"--couchdb": "http://127.0.0.1:5984", "--log-level": "info", "--couchdb-user": "svc"}
    with pytest.raises(ConfigError, match=r"--couchdb-password-file: .*pw: writable by group or others"):
        Config.from_args(_flags(args, **{"--couchdb-password-file": str(password)}), env={})
    password.chmod(0o600)
    assert Config.from_args(_flags(args, **{"--couchdb-password-file": str(password)}), env={}).couchdb_password == (
        "secret"
    )


def test_a_user_without_a_password_stops_startup():
    args = _flags({"--couchdb": "http://127.0.0.1:5984", "--log-level": "info", "--couchdb-user": "svc"})
    for env in ({}, {"DATA_SERVICE_COUCHDB_PASSWORD": ""}):
        with pytest.raises(ConfigError, match=r"--couchdb-user=svc needs a password: \$DATA_SERVICE_COUCHDB_PASSWORD"):
            Config.from_args(args, env=env)
    assert Config.from_args({**args, "--couchdb-user": None}, env={}).couchdb_auth is None


def _flags(args: dict, **more: str) -> dict:
    """docopt's dict for the flags Config reads (absent ones None)."""
    names = ("--couchdb-user", "--couchdb-password-file", "--ca-file", "--models", "--keys-dir", "--kek-file")
    defaults = {name: None for name in names}
    defaults.update({"--database": "db", "--listen": "127.0.0.1", "--port": "8080", "--no-verify-tls": False})
    defaults.update({"--connect-timeout": "5", "--request-timeout": "30", "--max-connections": "100"})
    defaults.update({"--max-body": "1048576"})
    return {**defaults, **args, **more}


# -- keyset writes ------------------------------------------------------------------------


def test_keyset_writes_are_atomic_and_never_follow_a_planted_link(tmp_path, monkeypatch):
    """Issue 22 #11: a new temporary file (O_CREAT|O_EXCL|O_NOFOLLOW), synced with its
    directory, renamed into place; ``create`` never overwrites, not even through a link."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(keys_module.os, "fsync", fsync)
    keys = KeysDir(tmp_path / "keys")
    keys.create()
    assert synced == ["file", "dir"] * 4
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in keys.files()} == {"0o600"}
    for path in keys.files():
        path.unlink()
    dangling = tmp_path / "written-by-the-attacker"
    os.symlink(dangling, keys.path("lookup"))  # planted where create will write: never followed
    with pytest.raises(KeysetError, match=r"lookup\.json: exists; refusing to overwrite"):
        keys.create()
    assert not dangling.exists()
    os.unlink(keys.path("lookup"))
    KeysDir(tmp_path / "other").create()
    for path in KeysDir(tmp_path / "other").files():
        os.replace(path, keys.directory / path.name)
    synced.clear()
    keys.rotate("signing")
    assert synced == ["file", "dir"]
    assert sorted(p.name for p in keys.directory.iterdir()) == sorted(p.name for p in keys.files())  # no temp left

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    opened: list[int] = []
    real_open = os.open

    def spy_open(path, flag, *args):
        if str(path).endswith(".tmp"):
            opened.append(flag)
        return real_open(path, flag, *args)

    monkeypatch.setattr(keys_module.os, "open", spy_open)
    keys.rotate("encryption")
    assert len(opened) == 1 and opened[0] & flags == flags


# -- a sidecar running as the image's user, its secrets from Secret volumes -------------


@pytest.mark.root
def test_a_secret_volume_another_user_can_write_stops_startup(base, tmp_path):
    staging = KeysDir(tmp_path / "staging")
    staging.create()
    keys = secret_volume(base / "keys", keyset_files(staging))
    os.chown(keys / "..2026_01_01_00_00_00.000000001" / "lookup.json", 4242, FS_GROUP)
    command = [*AS_APP, sys.executable, "-m", "data_service", "serve", f"--keys-dir={keys}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "lookup.json: owned by uid 4242, neither root nor this process's user (uid 10001)" in result.stderr
