"""Metric labels without ids (CouchDB operations), and the cached database report: expiry,
sharing, failures forgotten."""

from __future__ import annotations

import asyncio

import pytest

from data_service.metrics import Cached, couchdb_operation


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/", "server"),
        ("/_uuids", "uuids"),
        ("/_node/_local/_config/uuids/algorithm", "node_config"),
        ("/_up", "other"),
        ("/db", "db"),
        ("/db/abc123", "doc"),
        ("/db/_design/ds_user_v1", "design_doc"),
        ("/db/_design%2Fds_user_v1", "design_doc"),
        ("/db/_design/ds_user_v1/_view/index", "view"),
        ("/db/_design/ds_user_v1/_info", "design_info"),
        ("/db/_all_docs", "all_docs"),
        ("/db/_bulk_docs", "bulk_docs"),
        ("/db/_bulk_get", "bulk_get"),
        ("/db/_changes", "changes"),
        ("/db/_security", "security"),
        ("/db/_local/idem", "local_doc"),
        ("/db/abc/attachment", "other"),
        ("/db/_compact", "other"),
    ],
)
def test_couchdb_operation_has_no_ids(path, operation):
    assert couchdb_operation(path) == operation


async def test_cache_expires_shares_and_forgets_failures():
    now, calls = [0.0], []

    async def compute():
        calls.append(now[0])
        await asyncio.sleep(0)
        if len(calls) == 3:
            raise ConnectionError("down")
        return len(calls)

    cache = Cached(5.0, clock=lambda: now[0])
    assert await asyncio.gather(cache.get(compute), cache.get(compute)) == [1, 1]  # one computation shared
    now[0] = 4.9
    assert await cache.get(compute) == 1
    now[0] = 5.0
    assert await cache.get(compute) == 2
    now[0] = 10.0
    with pytest.raises(ConnectionError):
        await cache.get(compute)
    assert await cache.get(compute) == 4  # the failure was not cached
    assert calls == [0.0, 5.0, 10.0, 10.0]
