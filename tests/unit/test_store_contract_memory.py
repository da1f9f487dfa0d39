"""The store contracts (tests/contracts/store_*.py) on the in-memory CouchDB: the fast tier."""

from __future__ import annotations

from contracts.backends import OnMemory
from contracts.store_bulk import StoreBulkContract
from contracts.store_changes import StoreChangesContract
from contracts.store_claims import StoreClaimsContract
from contracts.store_documents import StoreDocumentsContract
from contracts.store_reconciler import StoreReconcilerContract


class TestStoreDocumentsOnMemory(OnMemory, StoreDocumentsContract):
    pass


class TestStoreBulkOnMemory(OnMemory, StoreBulkContract):
    pass


class TestStoreClaimsOnMemory(OnMemory, StoreClaimsContract):
    pass


class TestStoreReconcilerOnMemory(OnMemory, StoreReconcilerContract):
    pass


class TestStoreChangesOnMemory(OnMemory, StoreChangesContract):
    pass
