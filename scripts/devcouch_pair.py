#!/usr/bin/env python3
"""Two local CouchDB-compatible dev servers replicating both ways, continuously:
a two-node setup that produces real replication conflicts.

Usage:
  devcouch_pair.py start [--dir=DIR] [--database=NAME] [--memory]
  devcouch_pair.py pause [--dir=DIR]
  devcouch_pair.py resume [--dir=DIR]
  devcouch_pair.py status [--dir=DIR]
  devcouch_pair.py stop [--dir=DIR]

``start`` runs two pouchdb-servers (``scripts/devcouch.py``, state in DIR/a and DIR/b,
each with its own admin password), creates the database on both and starts the
replications a → b and b → a. ``pause`` cancels both (writes on either side then
conflict once resumed), ``resume`` starts them again. State: DIR/pair.json.

Replications are documents in each source server's ``_replicator`` database
(``continuous: true``; source and target as ``{"url": ..., "headers":
{"Authorization": "Basic ..."}}`` so no password is in a URL). Deleting the document
cancels the replication — the one way that works on both Apache CouchDB 3 and
pouchdb-server (whose ``POST /_replicate`` cannot cancel a continuous replication).
pouchdb-server's replicator keeps a cancelled replication's signature and would take
an identical new document for a duplicate, so every start uses new document ids and
a ``generation`` field.

pouchdb-server quirk: in a database with a ``validate_doc_update`` (the installer's
``_design/data_service_guard``) its validation plugin replaces the ``_revisions`` of
every ``new_edits: false`` write — replication's included — with the stored
document's, so replicated edits of existing documents are silently dropped. Leave the
guard out of databases you replicate on the dev server; Apache CouchDB is not affected.

As a library (the tests): ``Replication(Endpoint(...), Endpoint(...))`` replicates
between any two databases — on two servers, or two databases of one server, which is
a two-node setup just as good and works against any server (``COUCHDB_URL``).
Standard library only, like devcouch.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devcouch

ROOT = devcouch.ROOT
REPLICATOR = "_replicator"


@dataclass(frozen=True)
class Endpoint:
    """One database: ``server`` is the admin URL (credentials included, as COUCHDB_URL)."""

    server: str
    database: str

    @property
    def base(self) -> str:
        parts = urllib.parse.urlsplit(self.server)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))

    @property
    def authorization(self) -> str | None:
        parts = urllib.parse.urlsplit(self.server)
        if parts.username is None:
            return None
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def spec(self) -> dict:
        """The source/target object of a replication document."""
        spec: dict = {"url": f"{self.base}/{urllib.parse.quote(self.database, safe='')}"}
        if self.authorization:
            spec["headers"] = {"Authorization": self.authorization}
        return spec

    def request(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """(status, JSON body) of a request to this endpoint's server."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None

    def is_couchdb(self) -> bool:
        """Apache CouchDB (has the replication scheduler API), not pouchdb-server."""
        status, body = self.request("GET", "/")
        return status == 200 and isinstance(body, dict) and "couchdb" in body

    def ensure_database(self, name: str | None = None) -> None:
        status, body = self.request("PUT", "/" + urllib.parse.quote(name or self.database, safe=""))
        if status not in (201, 202, 412):
            raise RuntimeError(f"creating database {name or self.database}: {status} {body}")


class Replication:
    """Continuous replication both ways between ``a`` and ``b``, with pause and resume."""

    def __init__(
        self, a: Endpoint, b: Endpoint, name: str = "ds-pair", generation: str | None = None, running: bool = False
    ) -> None:
        self.a, self.b, self.name = a, b, name
        self.generation = generation
        self.running = running

    def _docs(self) -> list[tuple[Endpoint, str, dict]]:
        """(server holding the document, its id, the document) per direction."""
        docs = []
        for label, source, target in (("a-to-b", self.a, self.b), ("b-to-a", self.b, self.a)):
            docs.append(
                (
                    source,
                    f"{self.name}-{label}-{self.generation}",
                    {
                        "source": source.spec(),
                        "target": target.spec(),
                        "continuous": True,
                        "generation": self.generation,
                    },
                )
            )
        return docs

    def start(self) -> None:
        if self.running:
            return
        self.generation = uuid.uuid4().hex[:12]
        for server, docid, doc in self._docs():
            server.ensure_database(REPLICATOR)
            status, body = server.request("PUT", f"/{REPLICATOR}/{docid}", doc)
            if status not in (201, 202):
                raise RuntimeError(f"starting replication {docid}: {status} {body}")
        self.running = True

    def pause(self) -> None:
        """Cancel both replications (delete their documents)."""
        if not self.running:
            return
        for server, docid, _ in self._docs():
            for _ in range(20):  # the replicator itself updates the document: retry on 409
                status, body = server.request("GET", f"/{REPLICATOR}/{docid}")
                if status == 404:
                    break
                rev = urllib.parse.quote(body["_rev"], safe="")
                status, body = server.request("DELETE", f"/{REPLICATOR}/{docid}?rev={rev}")
                if status in (200, 202, 404):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"cannot delete replication {docid}: {status} {body}")
        self._wait_until_stopped()
        self.running = False

    def _wait_until_stopped(self, seconds: float = 30.0) -> None:
        """On Apache CouchDB a deleted replication document's job stops asynchronously (on a
        cluster, on whichever node runs it, after its start-up delay). Its replication id is
        that of the next generation's document (same source, target and options; extra
        fields such as ``generation`` are ignored), so a document created while the old job
        still runs is refused as a duplicate and only retried after a back-off. Wait until
        ``_scheduler/jobs`` lists no job of ours (a documented API; pouchdb-server has none)."""
        ours = {docid for _, docid, _ in self._docs()}
        for server in {self.a.base: self.a, self.b.base: self.b}.values():
            if not server.is_couchdb():
                continue
            deadline = time.monotonic() + seconds
            while True:
                status, body = server.request("GET", "/_scheduler/jobs")
                jobs = body.get("jobs", []) if status == 200 and isinstance(body, dict) else []
                left = [job.get("doc_id") for job in jobs if job.get("doc_id") in ours]
                if not left:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"replication jobs still running {seconds} s after their documents were deleted: {left}"
                    )
                time.sleep(0.1)

    def resume(self) -> None:
        self.start()

    stop = pause

    def state(self) -> dict:
        return {
            "a": [self.a.server, self.a.database],
            "b": [self.b.server, self.b.database],
            "name": self.name,
            "generation": self.generation,
            "running": self.running,
        }

    @classmethod
    def from_state(cls, state: dict) -> Replication:
        return cls(Endpoint(*state["a"]), Endpoint(*state["b"]), state["name"], state["generation"], state["running"])


# --- the command line: two dev servers --------------------------------------------


def _state_file(directory: Path) -> Path:
    return directory / "pair.json"


def _save(directory: Path, replication: Replication) -> None:
    file = _state_file(directory)
    file.touch(mode=0o600)
    file.write_text(json.dumps(replication.state()))


def _load(directory: Path) -> Replication:
    try:
        return Replication.from_state(json.loads(_state_file(directory).read_text()))
    except (OSError, ValueError, KeyError):
        sys.exit(f"devcouch_pair: nothing started from {directory}")


def start_pair(
    directory: Path, database: str = "dev", memory: bool = False
) -> tuple[devcouch.DevCouch, devcouch.DevCouch, Replication]:
    """Start (or reuse) both servers, create ``database`` on both, replicate both ways."""
    directory.mkdir(parents=True, exist_ok=True)
    first = devcouch.start(directory / "a", memory=memory, databases=(database,))
    second = devcouch.start(directory / "b", memory=memory, databases=(database,))
    replication = Replication(Endpoint(first.admin_url, database), Endpoint(second.admin_url, database))
    if _state_file(directory).exists():
        previous = _load(directory)
        if previous.running and (previous.a, previous.b) == (replication.a, replication.b):
            return first, second, previous
        previous.pause()
    replication.start()
    _save(directory, replication)
    return first, second, replication


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "pause", "resume", "status", "stop"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".devcouch-pair", help="state (default .devcouch-pair)")
    parser.add_argument("--database", default="dev", help="database on both servers (default dev)")
    parser.add_argument("--memory", action="store_true", help="keep data in memory only")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.command == "start":
        first, second, _ = start_pair(directory, args.database, args.memory)
        print(
            f"devcouch_pair: a = {first.url}, b = {second.url} (database {args.database}), replicating both ways;"
            f" admin passwords in {directory}/a/admin-password and {directory}/b/admin-password"
        )
    elif args.command in ("pause", "resume"):
        replication = _load(directory)
        replication.pause() if args.command == "pause" else replication.resume()
        _save(directory, replication)
        print(f"devcouch_pair: replication {'paused' if args.command == 'pause' else 'running'}")
    elif args.command == "status":
        servers = [devcouch.status(directory / side) for side in ("a", "b")]
        for side, server in zip("ab", servers, strict=True):
            print(f"devcouch_pair: {side}: " + (f"running at {server.url}" if server else "not running"))
        if _state_file(directory).exists():
            print(f"devcouch_pair: replication {'running' if _load(directory).running else 'paused'}")
        return 0 if all(servers) else 1
    else:
        if _state_file(directory).exists():
            _state_file(directory).unlink()
        stopped = [devcouch.stop(directory / side) for side in ("a", "b")]
        print("devcouch_pair: stopped" if any(stopped) else "devcouch_pair: not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
