"""The CouchDB conformance contracts (tests/contracts) on the in-memory CouchDB: the fast tier."""

from __future__ import annotations

import pytest
from contracts.couchdb_documents import DocumentsContract
from contracts.couchdb_feeds import FeedsContract

from data_service.couchdb.memory import memory_couch


class OnMemory:
    @pytest.fixture
    async def couch(self):
        async with memory_couch() as couch:
            yield couch


class TestDocumentsOnMemory(OnMemory, DocumentsContract):
    pass


class TestFeedsOnMemory(OnMemory, FeedsContract):
    pass
