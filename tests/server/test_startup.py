"""``serve`` starting: one login to CouchDB before listening (a wrong password exits 2
within 5 s after one failed login, and never locks out the sidecars with the right one),
a user without a password, one data-service per port. (Usage errors and per-command help:
tests/unit/test_usage_errors.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from support import SAMPLE_MODELS, CouchScript, devcouch, install_design_docs, one_line, serving, unique_name

from data_service.config import Config
from data_service.couchdb import CouchDB
from data_service.couchdb.client import split_credentials

PASSWORD_ENV = "DATA_SERVICE_COUCHDB_PASSWORD"
# The goal is an exit within 5 s; the process needs about 1 s of CPU for it. This
# bound tolerates a loaded test machine and still tells "exits" from "retries" (the
# credential gate's first pause alone is 30 s).
EXIT_WITHIN = 15.0


@dataclass
class Exited:
    code: int
    seconds: float
    stdout: str
    stderr: str


async def serve_exits(config: Config, *flags: str, timeout: float = 30) -> Exited:
    """``data-service serve`` expected to stop by itself; how, and how long it took. The
    password goes in the environment, as ``serving`` passes it."""
    args = [f"--couchdb={config.couchdb_url}", f"--database={config.database}", f"--keys-dir={config.keys_dir}"]
    args += [f"--models={config.models_path}", "--reconcile-interval=0"]
    if config.couchdb_user:
        args.append(f"--couchdb-user={config.couchdb_user}")
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    if config.couchdb_password is not None:
        env[PASSWORD_ENV] = config.couchdb_password
    loop = asyncio.get_running_loop()
    started = loop.time()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "data_service", "serve", *args, *flags, env=env, stdout=-1, stderr=-1
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return Exited(process.returncode, loop.time() - started, stdout.decode(), stderr.decode())


class RefusalCounter:
    """A loopback relay to CouchDB counting the failed logins it answers (401 "Name or
    password is incorrect."; a 401 for lacking admin rights is not one)."""

    def __init__(self, url: str) -> None:
        self.target = (urlsplit(url).hostname, urlsplit(url).port)
        self.port = devcouch.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.refusals = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> RefusalCounter:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    async def _relay(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src, dst, answers: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if answers:
                        self.refusals += data.count(b"Name or password is incorrect.")
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


async def member(couch: CouchDB, db) -> tuple[str, str]:
    """A new CouchDB user (no roles) made a member of ``db``: what serve runs as."""
    name, password = unique_name("svc"), secrets.token_urlsafe(18)
    user = {"name": name, "password": password, "roles": [], "type": "user"}
    await couch.request("PUT", f"/_users/org.couchdb.user:{name}", json=user)
    await db.put_security({"members": {"names": [name], "roles": []}, "admins": {"names": [], "roles": []}})
    return name, password


def basic(user: str, password: str) -> dict:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def test_a_wrong_password_exits_2_within_5_s_after_one_failed_login(config, couch, db, tmp_path):
    await install_design_docs(db)
    name, password = await member(couch, db)
    async with RefusalCounter(config.couchdb_url) as counter:
        wrong = replace(config, couchdb_url=counter.url, couchdb_user=name, couchdb_password="wrong-" + password)
        exited = await serve_exits(wrong, "--workers=2", "--auto-install")
        assert exited.code == 2 and exited.seconds < EXIT_WITHIN, exited
        line = one_line(exited.stderr)
        assert line == (
            f"data-service: CouchDB at {counter.url} refused user {name!r} (Name or password is incorrect.): "
            f"check --couchdb-password-file or ${PASSWORD_ENV}"
        )
        assert password not in exited.stdout + exited.stderr and exited.stdout == ""
        assert counter.refusals == 1  # one login, before anything else (the installer, the workers)
        right = replace(config, couchdb_url=counter.url, couchdb_user=name, couchdb_password=password)
        async with serving(right, tmp_path) as served, aiohttp.ClientSession() as http:
            async with http.get(f"{served.base}/_health?quick=false") as resp:
                assert resp.status == 200, await resp.text()
        assert counter.refusals == 1


async def test_a_user_without_a_password_exits_2(config):
    exited = await serve_exits(replace(config, couchdb_user="svc", couchdb_password=None))
    assert exited.code == 2 and exited.seconds < EXIT_WITHIN
    assert one_line(exited.stderr) == (
        f"data-service: --couchdb-user=svc needs a password: ${PASSWORD_ENV} is not set or empty"
    )


@pytest.mark.own_node
async def test_a_crash_looping_wrong_password_never_locks_out_the_right_one(keys_dir, tmp_path):
    """On a private CouchDB 3.5.2 node (lockout as shipped: 5 failures in 5 minutes per
    user and address), a sidecar with the right password serves while one with a wrong
    password is started three times (a restarting container): each start makes exactly
    one failed login in CouchDB's log, so the right one is never locked out. Two more
    wrong logins then do lock the user out: the count is what keeps it safe."""
    directory = Path(tempfile.mkdtemp(prefix="couchdb-lockout-"))
    script = CouchScript(directory)
    url = await asyncio.to_thread(script, "start")
    try:
        base, admin = split_credentials(url)
        async with CouchDB(url) as couch:
            lockout = await couch.config_get("chttpd_auth_lockout")
            assert lockout.get("mode", "enforce") == "enforce" and int(lockout.get("threshold", 5)) == 5
            db = couch.database(unique_name())
            await db.create()
            await install_design_docs(db)
            name, password = await member(couch, db)
        config = Config(couchdb_url=base, database=db.name, couchdb_user=name, couchdb_password=password)
        config = replace(config, models_path=str(SAMPLE_MODELS))
        config = replace(config, keys_dir=keys_dir)
        log = directory / "node1" / "couchdb.log"
        failed = f"Authentication failed for user {name} from"
        async with serving(config, tmp_path) as served, aiohttp.ClientSession() as http:
            for attempt in range(1, 4):
                exited = await serve_exits(replace(config, couchdb_password="wrong"), "--workers=2")
                assert exited.code == 2 and exited.seconds < EXIT_WITHIN and "refused user" in exited.stderr
                assert log.read_text().count(failed) == attempt  # one failed login per start
                async with http.post(f"{served.base}/v1/note", json={"title": f"after {attempt}"}) as resp:
                    assert resp.status == 201, await resp.text()
            async with http.get(f"{served.base}/_health?quick=false") as resp:
                assert resp.status == 200
        async with aiohttp.ClientSession() as http:
            for _ in range(2):  # two more failures: five, CouchDB's threshold
                async with http.get(f"{base}/_session", headers=basic(name, "wrong")) as resp:
                    assert resp.status == 401
            async with http.get(f"{base}/_session", headers=basic(name, password)) as resp:
                assert resp.status == 403 and "locked" in (await resp.json())["reason"]
        exited = await serve_exits(config)  # now even the right password is refused
        assert exited.code == 2 and f"has locked user {name!r} out" in one_line(exited.stderr)
    finally:
        await asyncio.to_thread(script, "stop", "--wipe")


# -- one data-service per port ---------------------------------------------------------


async def test_a_second_instance_never_shares_the_port(config, tmp_path):
    async with serving(config, tmp_path, "--workers=2") as served:
        exited = await serve_exits(config, f"--port={served.port}", "--workers=2")
        assert exited.code == 2 and exited.seconds < EXIT_WITHIN
        assert one_line(exited.stderr) == (
            f"data-service: --port: port {served.port} is in use by another data-service (pid "
            f"{served.process.pid}) (on 127.0.0.1:{served.port}); one data-service per port"
        )
        ops = devcouch.free_port()
        same = await serve_exits(config, f"--port={ops}", f"--ops-listen=127.0.0.1:{ops}")
        assert same.code == 2 and "--ops-listen: port" in one_line(same.stderr)
        taken = await serve_exits(config, f"--port={devcouch.free_port()}", f"--ops-listen=127.0.0.1:{served.port}")
        assert taken.code == 2 and one_line(taken.stderr).startswith(f"data-service: --ops-listen: port {served.port}")


async def test_a_port_another_program_holds_is_one_line(config):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        exited = await serve_exits(config, f"--port={port}")
    assert exited.code == 2
    assert one_line(exited.stderr) == (
        f"data-service: --port: cannot listen on 127.0.0.1:{port}: in use by another program"
    )


# -- the command line ----------------------------------------------------------------------
