"""CouchDB as the benchmarks use it: which one, admin calls (stdlib, so cleanup never
depends on the event loop), its process's CPU time."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository
sys.path.insert(0, str(ROOT / "scripts"))
import devcouch  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Couch:
    url: str  # without credentials
    user: str
    password: str
    pid: int | None = None  # when this run started it (pouchdb-server)

    @classmethod
    def parse(cls, url: str, pid: int | None = None) -> Couch:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            sys.exit(f"bench: {url!r} is not an http(s) URL")
        if not parts.username:
            sys.exit("bench: the CouchDB URL needs admin credentials (http://user:password@host:port)")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            netloc += f":{parts.port}"
        bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return cls(bare, urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""), pid)

    @property
    def authorization(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def request(self, method: str, path: str, timeout: float = 30) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": self.authorization, "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None


def open_couchdb(args: Any, stack: contextlib.ExitStack) -> tuple[Couch, str]:
    """The CouchDB of a run and how it was chosen: started by ``args.couchdb_script`` in a
    temporary directory (stopped and wiped by ``stack``), ``args.couchdb_url``, else a
    private in-memory pouchdb-server."""
    if args.couchdb_script:
        couch_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-couchdb-")))
        script = str(args.couchdb_script.resolve())
        started = subprocess.run(
            [script, "start", f"--dir={couch_dir}"], capture_output=True, text=True, timeout=300, check=True
        )
        stack.callback(
            subprocess.run, [script, "stop", f"--dir={couch_dir}", "--wipe"], capture_output=True, timeout=120
        )
        url = subprocess.run(
            [script, "url", f"--dir={couch_dir}"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        couch = Couch.parse(url, pid=couchdb_pid(str(couch_dir), started.stdout + started.stderr))
        return couch, f"started by {args.couchdb_script}"
    if args.couchdb_url:
        return Couch.parse(args.couchdb_url), "given"
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-devcouch-")))
    dev = devcouch.start(tmp, memory=True)
    stack.callback(devcouch.stop, tmp)
    return Couch.parse(dev.admin_url, pid=dev.pid), f"private in-memory pouchdb-server, pid {dev.pid}"


def fresh_database(couch: Couch, stack: contextlib.ExitStack, prefix: str = "bench") -> str | None:
    """A new database ``<prefix>_<random>``, deleted when ``stack`` closes (also on an error,
    Ctrl-C or SIGTERM); None (and why, on stderr) when CouchDB refused to create it."""
    database = f"{prefix}_{os.urandom(6).hex()}"
    status, body = couch.request("PUT", f"/{database}")
    if status not in (201, 202):
        log(f"bench: creating database {database} answered {status} {body}")
        return None

    def drop_database() -> None:
        code, _ = couch.request("DELETE", f"/{database}", timeout=300)
        log(
            f"bench: deleted database {database}"
            if code in (200, 202)
            else f"bench: deleting database {database} answered {code}"
        )

    stack.callback(drop_database)
    return database


def couchdb_pid(couch_dir: str, said: str) -> int | None:
    """The Erlang VM serving from ``couch_dir`` (its command line names the directory),
    else the pid the start script printed."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command and command[0].endswith(b"beam.smp") and any(couch_dir.encode() in part for part in command):
                return int(entry.name)
    found = re.search(r"pid (\d+)", said)
    return int(found.group(1)) if found else None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (its threads included)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
