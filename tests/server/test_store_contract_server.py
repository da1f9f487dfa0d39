"""The store contracts (tests/contracts/store_*.py) on the server under test: the dev
server, or the CouchDB in $COUCHDB_URL. The same tests as tests/unit runs in memory."""

from __future__ import annotations

from contracts.store_bulk import StoreBulkContract
from contracts.store_changes import StoreChangesContract
from contracts.store_claims import StoreClaimsContract
from contracts.store_documents import StoreDocumentsContract
from contracts.store_reconciler import StoreReconcilerContract


class TestStoreDocumentsOnServer(StoreDocumentsContract):
    pass


class TestStoreBulkOnServer(StoreBulkContract):
    pass


class TestStoreClaimsOnServer(StoreClaimsContract):
    pass


class TestStoreReconcilerOnServer(StoreReconcilerContract):
    pass


class TestStoreChangesOnServer(StoreChangesContract):
    pass
