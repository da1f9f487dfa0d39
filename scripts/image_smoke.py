#!/usr/bin/env python3
"""The application side of `make image-test`: runs in the sidecar's pod (its network
namespace, as an app container would) from the image's own Python, standard library only.
One JSON line per check on stdout, each with its time; exit 1 at the first failure.

  image_smoke.py --data-port=8080 --token-file=/run/secrets/api_tokens [--ops-port=9090]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp*


class Failed(Exception):
    pass


def request(url: str, method: str = "GET", body: dict | None = None, token: str | None = None):
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            raw = answer.read()
            return answer.status, answer.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, error.headers, json.loads(raw) if raw else None


def listeners() -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket in this network namespace."""
    found = []
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state != LISTEN:
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            # the kernel prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
            family = socket.AF_INET if size == 4 else socket.AF_INET6
            found.append((socket.inet_ntop(family, words), int(port, 16)))
    return found


def pod_address() -> str:
    """This namespace's non-loopback address (the one a kubelet probe or another pod uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.0.2.2", 9))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]


def checks(args: argparse.Namespace):
    base = f"http://127.0.0.1:{args.data_port}"
    lines = Path(args.token_file).read_text().splitlines()
    token = next(line.strip() for line in lines if line.strip() and not line.startswith("#"))

    def loopback_only():
        sockets = listeners()
        data = [address for address, port in sockets if port == args.data_port]
        wide = [(a, p) for a, p in sockets if a not in ("127.0.0.1", "::1") and p != args.ops_port]
        if not data or wide or any(a not in ("127.0.0.1", "::1") for a in data):
            raise Failed(f"listening: {sockets}")
        return {"listening": sorted({f"{a}:{p}" for a, p in sockets})}

    def token_required():
        status, headers, body = request(f"{base}/v1/_types")
        if status != 401 or body["code"] != "unauthorized" or "Bearer" not in headers.get("WWW-Authenticate", ""):
            raise Failed(f"without a token: {status} {body}")
        status, _, _ = request(f"{base}/_health")  # liveness stays open
        if status != 200:
            raise Failed(f"/_health without a token: {status}")
        return {"without_token": 401, "liveness": 200}

    def round_trip():
        status, headers, created = request(f"{base}/v1/note", "POST", {"title": "from the image"}, token)
        if status != 201:
            raise Failed(f"create: {status} {created}")
        status, read_headers, read = request(f"{base}/v1/note/{created['id']}", token=token)
        if status != 200 or read["title"] != "from the image" or read_headers["ETag"] != headers["ETag"]:
            raise Failed(f"read: {status} {read}")
        status, _, _ = request(f"{base}/_health?quick=false", token=token)
        if status != 200:
            raise Failed(f"readiness: {status}")
        return {"created": created["id"], "etag": headers["ETag"], "readiness": status}

    def ops_listener():
        address = pod_address()
        status, _, body = request(f"http://{address}:{args.ops_port}/_health")
        if status != 200 or body.get("status") != "ok":
            raise Failed(f"ops listener on {address}:{args.ops_port}: {status} {body}")
        try:
            request(f"http://{address}:{args.data_port}/_health")
        except OSError:
            return {"ops": f"{address}:{args.ops_port} answers", "data_port_on_pod_address": "refused"}
        raise Failed(f"the data port answers on {address}")

    yield "loopback-only", loopback_only
    yield "token-required", token_required
    yield "create-read", round_trip
    if args.ops_port:
        yield "ops-listener", ops_listener


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-port", type=int, default=8080)
    parser.add_argument("--ops-port", type=int, default=0)
    parser.add_argument("--token-file", required=True)
    args = parser.parse_args()
    for name, check in checks(args):
        started = time.monotonic()
        try:
            result = check()
        except (Failed, OSError, KeyError, ValueError) as exc:
            print(json.dumps({"check": name, "ok": False, "error": str(exc)}))
            return 1
        print(json.dumps({"check": name, "ok": True, "ms": round(1000 * (time.monotonic() - started)), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
