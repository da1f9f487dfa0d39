"""The CouchDB conformance contracts (tests/contracts) on the server under test: the dev
server, or the CouchDB in $COUCHDB_URL. The in-memory CouchDB must answer as CouchDB does.

What they pin is what a single node answers right after each write (the in-memory CouchDB is
one): on a cluster, a read or an ``_all_docs`` range right after a write may come from a copy
internal replication has not reached yet, so they are left out there (``single_node``). The
product's own behaviour on a cluster is tried by the store contracts and the cluster tests."""

from __future__ import annotations

import pytest
from contracts.couchdb_documents import DocumentsContract
from contracts.couchdb_feeds import FeedsContract

pytestmark = pytest.mark.single_node


class TestDocumentsOnServer(DocumentsContract):
    pass


class TestFeedsOnServer(FeedsContract):
    pass
