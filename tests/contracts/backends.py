"""The backends a contract runs on (Kinto's storage-backend pattern). A contract is a class
of tests using the ``couch`` fixture (and ``db``, which conftest builds on it); each tier
subclasses it once:

    class TestXOnMemory(OnMemory, XContract): ...   # tests/unit: the fast tier
    class TestXOnServer(XContract): ...             # tests/server: conftest's couch, a real server
"""

from __future__ import annotations

import pytest

from data_service.couchdb.memory import memory_couch


class OnMemory:
    """``couch``: a client of a fresh in-memory CouchDB (``couch.transport`` takes faults)."""

    @pytest.fixture
    async def couch(self):
        async with memory_couch() as couch:
            yield couch
