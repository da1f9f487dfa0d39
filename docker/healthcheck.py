#!/usr/bin/env python3
"""The image's HEALTHCHECK: liveness (GET /_health) of the running `data-service serve`,
at the address and port that process was started with (read from its command line, so
a changed --port or --listen needs no change here). Exit 0 healthy, 1 not.
Standard library only."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

DEFAULTS = {"--listen": "127.0.0.1", "--port": "8080"}
ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def serve_arguments() -> list[str] | None:
    """The command line of the first `data-service serve` process (the parent of the workers)."""
    for proc in sorted(Path("/proc").glob("[0-9]*"), key=lambda p: int(p.name)):
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "serve" in argv and any(part.endswith("data-service") or part == "data_service" for part in argv):
            return argv
    return None


def option(argv: list[str], name: str) -> str:
    for index, part in enumerate(argv):
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
        if part == name and index + 1 < len(argv):
            return argv[index + 1]
    return DEFAULTS[name]


def main() -> int:
    argv = serve_arguments()
    if argv is None:
        print("healthcheck: no data-service serve process", file=sys.stderr)
        return 1
    host = option(argv, "--listen")
    host = ANY.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    url = f"http://{host}:{option(argv, '--port')}/_health"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            healthy = answer.status == 200 and json.load(answer).get("status") == "ok"
    except (OSError, ValueError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
