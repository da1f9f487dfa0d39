"""The CouchDB conformance contracts (tests/contracts) on the in-memory CouchDB: the fast tier."""

from __future__ import annotations

from contracts.backends import OnMemory
from contracts.couchdb_documents import DocumentsContract
from contracts.couchdb_feeds import FeedsContract


class TestDocumentsOnMemory(OnMemory, DocumentsContract):
    pass


class TestFeedsOnMemory(OnMemory, FeedsContract):
    pass
