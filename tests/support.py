"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import sys
import uuid
from pathlib import Path

from tornado.testing import bind_unused_port

from data_service.config import Config
from data_service.server import build

ROOT = Path(__file__).resolve().parent.parent  # the repository
sys.path.insert(0, str(ROOT / "scripts"))
import devcouch  # noqa: E402


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def dead_port() -> int:
    """A loopback port with nothing listening (a stopped server)."""
    return devcouch.free_port()


@contextlib.asynccontextmanager
async def running_sidecar(config: Config):
    """The real app on a free loopback port; yields its base URL."""
    ctx, server = build(config)
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await server.close_all_connections()
        await ctx.couch.aclose()
