"""TODO docstring."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from support import serving

from data_service.keys import KeysDir, kek_from, new_kek

APP_UID = 10001  # the image's user


FS_GROUP = 2000  # a pod's securityContext.fsGroup


TOKEN = "token-from-a-secret-0123456789"


def secret_volume(root: Path, files: dict[str, bytes], mode: int = 0o440, group: int = FS_GROUP) -> Path:
    """A Secret volume as the kubelet writes it: a sticky, world-writable, root-owned
    mount point; the files in a timestamped directory (0755, root); ``..data`` a link to
    it; each name a link through ``..data``; files root-owned, group ``fsGroup``, mode
    ``defaultMode``."""
    root.mkdir(mode=0o755)
    os.chmod(root, 0o1777)
    update(root, "..2026_01_01_00_00_00.000000001", files, mode, group)
    for name in files:
        os.symlink(f"..data/{name}", root / name)
    return root


def update(root: Path, version: str, files: dict[str, bytes], mode: int = 0o440, group: int = FS_GROUP) -> None:
    """The kubelet's atomic update: a new timestamped directory, then ``..data`` swapped."""
    directory = root / version
    directory.mkdir(mode=0o755)
    for name, data in files.items():
        (directory / name).write_bytes(data)
        os.chown(directory / name, 0, group)
        os.chmod(directory / name, mode)
    os.symlink(version, root / "..data_tmp")
    os.rename(root / "..data_tmp", root / "..data")


@pytest.fixture
def base(tmp_path) -> Path:
    """A directory any user may traverse (tmp_path's parents are private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="secret-layout-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


AS_APP = ("setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", f"--groups={FS_GROUP}")  # fsGroup: supplementary


def keyset_files(keys: KeysDir) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in keys.files()}


def logged(served, text: str) -> int:
    return sum(text in line["message"] for line in served.log_lines())


async def until_logged(served, text: str, before: int) -> None:
    """Until ``text`` is logged once more than ``before`` times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30  # the files are looked at every 5 s
    while logged(served, text) <= before:
        assert loop.time() < deadline, f"not logged: {text}"
        await asyncio.sleep(0.1)


@pytest.mark.root
async def test_a_sidecar_runs_on_secret_volumes_and_follows_their_updates(config, base, tmp_path, http):
    """Keys, KEK, API token and CouchDB password mounted as Kubernetes mounts Secrets
    (root-owned, 0440, group fsGroup, ``..data`` links), the sidecar running as uid 10001:
    it starts; a token rotated and a keyset rotated by the kubelet's ``..data`` swap are
    picked up without a signal; a broken update keeps the secrets it has."""
    kek = new_kek()
    staging = KeysDir(tmp_path / "staging", kek_from(None, {"DATA_SERVICE_KEK": kek}))
    staging.create()
    keys = secret_volume(base / "keys", keyset_files(staging))
    creds = {"token": f"{TOKEN}\n".encode(), "couchdb-password": (config.couchdb_password or "").encode()}
    creds["kek"] = kek.encode()
    volume = secret_volume(base / "creds", creds)
    flags = [f"--api-token-file={volume / 'token'}", f"--kek-file={volume / 'kek'}"]
    if config.couchdb_user:
        flags.append(f"--couchdb-password-file={volume / 'couchdb-password'}")
    mounted = replace(config, keys_dir=str(keys), couchdb_password=None)
    async with serving(mounted, tmp_path, *flags, launcher=AS_APP) as served:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert await status(http, f"{served.base}/v1/_types", bearer) == 200
        assert await status(http, f"{served.base}/v1/_types") == 401

        rotated = "rotated-token-abcdefghijklmnop"
        before = logged(served, "api tokens reloaded")
        update(volume, "..2026_01_02_00_00_00.000000002", {**creds, "token": f"{rotated}\n".encode()})
        await until_logged(served, "api tokens reloaded", before)
        assert await status(http, f"{served.base}/v1/_types", {"Authorization": f"Bearer {rotated}"}) == 200
        assert await status(http, f"{served.base}/v1/_types", bearer) == 401

        new_key = staging.rotate("signing")
        staging.promote("signing", new_key)
        before = logged(served, "keysets reloaded")
        update(keys, "..2026_01_02_00_00_00.000000002", keyset_files(staging))
        await until_logged(served, "keysets reloaded", before)
        health = await json_of(http, f"{served.base}/_health")
        assert health["build"]["keys"]["signing"]["primary"] == new_key

        before = logged(served, "api tokens not reloaded")
        update(volume, "..2026_01_03_00_00_00.000000003", {**creds, "token": b"not a token\n"})
        await until_logged(served, "api tokens not reloaded", before)
        assert await status(http, f"{served.base}/v1/_types", {"Authorization": f"Bearer {rotated}"}) == 200
        before = logged(served, "keysets not reloaded")
        update(keys, "..2026_01_03_00_00_00.000000003", keyset_files(staging), mode=0o460)  # group-writable
        await until_logged(served, "keysets not reloaded", before)
        assert (await json_of(http, f"{served.base}/_health"))["build"]["keys"]["signing"]["primary"] == new_key
        assert served.process.returncode is None
    log = served.log_path.read_text()
    assert TOKEN not in log and rotated not in log and kek not in log
    [refusal] = [line["message"] for line in served.log_lines() if "keysets not reloaded" in line["message"]]
    assert "signing.json: writable by group or others (mode 0460)" in refusal


async def status(http, url: str, headers: dict | None = None) -> int:
    async with http.get(url, headers=headers or {}) as resp:
        await resp.read()
        return resp.status


async def json_of(http, url: str) -> dict:
    async with http.get(url) as resp:
        return await resp.json()
