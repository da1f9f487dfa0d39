#!/usr/bin/env python3
"""Run the local CouchDB-compatible dev server (pouchdb-server, npm) on 127.0.0.1.

Usage:
  devcouch.py start [--dir=DIR] [--port=PORT] [--memory] [--database=NAME ...]
  devcouch.py stop [--dir=DIR]
  devcouch.py status [--dir=DIR]

The admin password is generated once and kept in DIR/admin-password (0600);
pouchdb-server reads it from the config file this script writes (never from a
flag). DIR also holds the pid, the log and, unless --memory, the data.
Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "node_modules" / ".bin" / "pouchdb-server"
ADMIN = "admin"


@dataclass(frozen=True)
class DevCouch:
    directory: Path
    port: int
    user: str
    password: str
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """URL with admin credentials, the form COUCHDB_URL takes."""
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _password(directory: Path) -> str:
    file = directory / "admin-password"
    if not file.exists():
        file.touch(mode=0o600)
        file.write_text(secrets.token_urlsafe(18))
    return file.read_text().strip()


def _request(url: str, user: str, password: str, method: str = "GET") -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def start(directory: Path, port: int | None = None, memory: bool = False, databases: tuple[str, ...] = ()) -> DevCouch:
    """Start pouchdb-server (or reuse the one already running from ``directory``)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    running = status(directory)
    if running is None:
        if not BINARY.exists():
            sys.exit(f"devcouch: {BINARY} missing; run: npm ci --no-audit --no-fund --ignore-scripts")
        port = port or free_port()
        password = _password(directory)
        config = directory / "config.json"
        config.write_text(
            json.dumps(
                {
                    "admins": {ADMIN: password},
                    "log": {"file": str(directory / "pouchdb.log")},
                }
            )
        )
        config.chmod(0o600)
        storage = ["-m"] if memory else ["-d", str(directory / "data")]
        if not memory:
            (directory / "data").mkdir(exist_ok=True)
        with open(directory / "server.log", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [str(BINARY), "--host", "127.0.0.1", "--port", str(port), "-n", "-c", str(config), *storage],
                cwd=directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NODE_OPTIONS": "--unhandled-rejections=warn"},
                start_new_session=True,
            )
        (directory / "pid").write_text(f"{proc.pid} {port}\n")
        running = DevCouch(directory, port, ADMIN, password, proc.pid)
        _wait_ready(running, proc)
    for name in databases:
        code = _request(f"{running.url}/{name}", running.user, running.password, "PUT")
        if code not in (201, 202, 412):
            sys.exit(f"devcouch: creating database {name} answered {code}")
    return running


def _wait_ready(couch: DevCouch, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"devcouch: pouchdb-server exited ({proc.returncode}); see {couch.directory}/server.log")
        try:
            if _request(couch.url + "/", couch.user, couch.password) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    stop(couch.directory)
    sys.exit(f"devcouch: not ready after {seconds:.0f}s; see {couch.directory}/server.log")


def status(directory: Path) -> DevCouch | None:
    """The server started from ``directory``, if it is still running."""
    try:
        pid, port = map(int, (directory / "pid").read_text().split())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return DevCouch(directory, port, ADMIN, _password(directory), pid)


def stop(directory: Path) -> bool:
    couch = status(directory)
    (directory / "pid").unlink(missing_ok=True)
    if couch is None:
        return False
    os.killpg(couch.pid, signal.SIGTERM)
    for _ in range(50):
        try:
            os.kill(couch.pid, 0)
        except OSError:
            return True
        try:  # reap it if it is our child
            os.waitpid(couch.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    os.killpg(couch.pid, signal.SIGKILL)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".devcouch", help="state directory (default .devcouch)")
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--memory", action="store_true", help="keep data in memory only")
    parser.add_argument("--database", action="append", default=[], help="create this database too")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.command == "start":
        couch = start(directory, args.port, args.memory, tuple(args.database))
        print(
            f"devcouch: {couch.url} (pid {couch.pid}); admin user {couch.user!r}, "
            f"password in {directory / 'admin-password'}"
        )
    elif args.command == "stop":
        print("devcouch: stopped" if stop(directory) else "devcouch: not running")
    else:
        couch = status(directory)
        print(f"devcouch: running at {couch.url} (pid {couch.pid})" if couch else "devcouch: not running")
        return 0 if couch else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
