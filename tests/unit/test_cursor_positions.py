"""A sealed cursor whose position lies outside its segment, refused before any I/O."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import parse_models
from data_service.protection import Keyring
from data_service.query import QueryError, parse, plan
from data_service.store.queries import _binding, run_query
from data_service.store.reader import Reader

# the models of tests/server/test_cursors.py that this test needs: type a, owner indexed
A = {"version": "1.0", "properties": {"owner": {"type": "string", "indexed": True}, "title": {"type": "string"}}}


def test_a_cursor_whose_position_lies_outside_its_segment_is_refused(keys_dir):
    """A sealed cursor with the right binding but a position outside the query's range
    (only the keyholder can make one: defence in depth) — refused before any I/O."""
    models = parse_models({"types": {"a": A}})
    a = models.get("a")
    lifecycle = Lifecycle(Keyring(KeysDir(keys_dir), "db"), "w")
    query = parse(a, {"owner": ["alice"], "limit": ["1"]})
    valid = run_query_cursor(lifecycle, a, query, ["alice"])
    for key in (["mallory"], ["alice", "extra"], "alice"):
        forged = replace(query, cursor=run_query_cursor(lifecycle, a, query, key))
        with pytest.raises(QueryError, match="outside the query's ranges"):
            _run(lifecycle, a, forged)
    with pytest.raises(AttributeError):  # a valid position passes the checks and reaches the database (None)
        _run(lifecycle, a, replace(query, cursor=valid))


def run_query_cursor(lifecycle: Lifecycle, model, query, key) -> str:
    """A cursor as ``run_query`` seals it, positioned at ``key``."""
    binding = _binding(lifecycle.keys, model, query, plan(model, query, lifecycle.lookup_values))
    return lifecycle.keys.seal({"b": binding, "s": 0, "k": key, "d": "some-id", "x": 2**40})


def _run(lifecycle: Lifecycle, model, query):
    reader = Reader(None, None, lifecycle, None)  # type: ignore[arg-type] # no I/O before the cursor is checked
    return asyncio.run(run_query(None, reader, model, query, 3600))  # type: ignore[arg-type]
