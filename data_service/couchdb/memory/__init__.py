"""An Apache CouchDB 3.5 single node in memory, behind the client's transport seam.

For the fast tests: ``memory_couch()`` is a ``CouchDB`` client on a fresh in-memory
server (or on ``server``, to share one between clients). What it emulates and what it
does not: ``server.py`` and docs/testing.md.
"""

from __future__ import annotations

from typing import Any

from ..client import CouchDB
from .server import MemoryServer
from .transport import Fault, MemoryTransport, matching

URL = "http://memory.invalid"  # never dialled: the transport answers


def memory_couch(server: MemoryServer | None = None, *, record: bool = False, **options: Any) -> CouchDB:
    """A client whose transport is a ``MemoryTransport`` (``couch.transport``, for faults)."""
    return CouchDB(URL, transport=MemoryTransport(server, record=record), **options)


__all__ = ["Fault", "MemoryServer", "MemoryTransport", "matching", "memory_couch"]
