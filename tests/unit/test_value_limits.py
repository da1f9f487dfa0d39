"""``check_limits`` names every out-of-range number and the first too-deep path."""

from __future__ import annotations

import pytest

from data_service.models import MAX_NESTING, MAX_SAFE, NestedTooDeep, NumberOutOfRange, check_limits


def test_check_limits_names_every_number_and_the_first_deep_path():
    check_limits({"a": [MAX_SAFE, -MAX_SAFE, 1.5, True], "b": {"c": None}})
    with pytest.raises(NumberOutOfRange) as raised:
        check_limits({"a": [1, 2**53], "b": {"c": -1e300}, "d": float("nan")})
    assert [v.path for v in raised.value.violations] == ["/a/1", "/b/c", "/d"]
    value: object = 1
    for _ in range(MAX_NESTING):
        value = [value]
    check_limits(value)
    with pytest.raises(NestedTooDeep) as raised:
        check_limits([value])
    assert raised.value.violations[0].path.endswith("/...")
