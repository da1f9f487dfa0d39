"""The query planner picks the index that serves a query."""

from __future__ import annotations

import pytest
from support import ROOT

from data_service.models import load_models
from data_service.query import Condition, Query, QueryError, parse, plan

MODELS = load_models(ROOT / "models" / "sample.yaml")


def test_planner_picks_the_serving_index():
    event = MODELS.get("event")

    def planned(**args):
        return plan(event, parse(event, {k: [v] for k, v in args.items()}), lambda m, p, v: [v])

    assert planned(owner="a").index.properties == ("owner", "created_at")
    assert planned(kind="login").index.properties == ("kind",)
    assert planned(sort="-created_at").index.properties == ("created_at",)
    assert planned().index.properties == ()
    chosen = planned(owner="a", **{"created_at[lt]": "2026"}, sort="-created_at")
    assert chosen.descending and chosen.segments[0].low == ["a"] and chosen.segments[0].high == ["a", "2026", {}]
    assert not chosen.accepts(["a", "2026"]) and chosen.accepts(["a", "2025"])
    assert planned(sort="-kind").index.properties == ("kind",)
    with pytest.raises(QueryError, match="no index"):
        plan(event, Query((Condition("kind", "eq", "x"), Condition("owner", "eq", "y"))), lambda m, p, v: [v])
