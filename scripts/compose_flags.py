#!/usr/bin/env python3
"""What docker/compose.yaml says about one service, as podman run arguments, one per line:
`make image-test` runs the image with exactly these settings.

  compose_flags.py flags SERVICE      # hardening: read-only root, tmpfs, capabilities, init, ...
  compose_flags.py command SERVICE    # --entrypoint=... (if any), then the command's arguments
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker" / "compose.yaml"


def flags(service: dict) -> list[str]:
    out = []
    if service.get("read_only"):
        out += ["--read-only", "--read-only-tmpfs=false"]  # only the tmpfs compose declares
    out += [f"--tmpfs={mount}" for mount in service.get("tmpfs", [])]
    out += [f"--cap-drop={cap}" for cap in service.get("cap_drop", [])]
    out += [f"--security-opt={opt.removesuffix(':true')}" for opt in service.get("security_opt", [])]
    if service.get("init"):
        out.append("--init")
    if "user" in service:
        out.append(f"--user={service['user']}")
    return out


def command(service: dict) -> list[str]:
    entrypoint = service.get("entrypoint") or []
    out = [f"--entrypoint={entrypoint[0]}"] if entrypoint else []
    return out + entrypoint[1:] + list(service.get("command", []))


def main(what: str, name: str) -> int:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    if name not in services or what not in ("flags", "command"):
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(flags(services[name]) if what == "flags" else command(services[name])))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]) if len(sys.argv) == 3 else 2)
