"""A sidecar (as the image's user) on Kubernetes-style Secret volumes, following their updates:
tokens and keysets reloaded, bad updates refused and logged, no secret in the log. Needs
root; the secret-file rule itself is tests/unit/test_secret_files.py's."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from support import serving
from support.secret_volumes import AS_APP, TOKEN, keyset_files, secret_volume, traversable_directory, update

from data_service.keys import KeysDir, kek_from, new_kek


@pytest.fixture
def base():
    with traversable_directory() as directory:
        yield directory


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
