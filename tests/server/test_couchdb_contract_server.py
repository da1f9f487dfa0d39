"""The CouchDB conformance contracts (tests/contracts) on the server under test: the dev
server, or the CouchDB in $COUCHDB_URL. The in-memory CouchDB must answer as CouchDB does."""

from __future__ import annotations

from contracts.couchdb_documents import DocumentsContract
from contracts.couchdb_feeds import FeedsContract


class TestDocumentsOnServer(DocumentsContract):
    pass


class TestFeedsOnServer(FeedsContract):
    pass
