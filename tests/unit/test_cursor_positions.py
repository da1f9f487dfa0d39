"""TODO docstring."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from data_service import design
from data_service.keys import KeysDir
from data_service.lifecycle import Lifecycle
from data_service.models import parse_models
from data_service.protection import Keyring
from data_service.query import QueryError, parse, plan
from data_service.store.queries import _binding, run_query
from data_service.store.reader import Reader

OWNER_INDEXED = {"type": "string", "indexed": True}


A = {"version": "1.0", "properties": {"owner": OWNER_INDEXED, "title": {"type": "string"}}}


B = {"version": "1.0", "properties": {"owner": {**OWNER_INDEXED, "protection": "sha3-512"}}}


MODELS = {
    "base": {"types": {"a": A, "b": B}},
    # the same query, served by another index of the type
    "reindexed": {
        "types": {
            "a": {**A, "properties": {**A["properties"], "owner": {"type": "string"}}, "indexes": [["owner", "title"]]}
        }
    },
    "bumped": {"types": {"a": {**A, "version": "1.1"}}},  # the same index, another version
}


@pytest.fixture
async def models(tmp_path, db):
    """The models files (by name), their design documents installed, three a's and b's."""
    files, wanted = {}, {}
    for name, models in MODELS.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(models))
        wanted.update(design.design_docs(parse_models(models)))
    for name, doc in wanted.items():
        await db.put_design(name, doc)
    return files


def test_a_cursor_whose_position_lies_outside_its_segment_is_refused(keys_dir):
    """A sealed cursor with the right binding but a position outside the query's range
    (only the keyholder can make one: defence in depth) — refused before any I/O."""
    models = parse_models(MODELS["base"])
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
