"""The Accept parser behind 406 (pure: ``data_service.web.accept``)."""

from __future__ import annotations

import pytest

from data_service.web.accept import MediaRange, acceptable, parse, quality

JSON, PROBLEM, TEXT = "application/json", "application/problem+json", "text/plain"


def test_absent_empty_or_all_invalid_is_no_preference():
    for header in (None, "", "  ", "garbage", "json, ;q=1, /"):
        assert parse(header) is None, header
        assert acceptable(header, [JSON])


def test_ranges_with_their_quality_lowercased():
    assert parse("Application/JSON;q=0.5, text/*;level=1, */*;Q=0") == [
        MediaRange("application", "json", 0.5),
        MediaRange("text", "*", 1.0),
        MediaRange("*", "*", 0.0),
    ]


@pytest.mark.parametrize(
    "member",
    ["*/json", "application/json;q=2", "application/json;q=1.5", "application/json;q=0.1234", "a b/c", "text/"],
)
def test_invalid_members_are_ignored(member):
    assert parse(f"{member}, text/html") == [MediaRange("text", "html", 1.0)]


@pytest.mark.parametrize(
    ("header", "offered", "expected"),
    [
        ("application/json", [JSON], True),
        ("text/html", [JSON, PROBLEM], False),
        ("text/html, application/*;q=0.1", [JSON], True),
        ("*/*", [JSON], True),
        ("application/json;q=0", [JSON], False),
        ("application/json;q=0, */*", [JSON], False),  # the more specific range decides
        ("application/json;q=0, */*", [JSON, PROBLEM], True),  # a problem may still be sent
        ("application/*;q=0, application/problem+json", [JSON, PROBLEM], True),
        ("text/event-stream", [JSON, "text/event-stream"], True),
        ("text/plain;version=0.0.4", [TEXT], True),
        ("application/json", [TEXT], False),
        ("APPLICATION/JSON;Q=1.000", [JSON], True),
        ("application/json;q=0.000", [JSON], False),
        ("application/json;q=1.", [JSON], True),
    ],
)
def test_acceptable(header, offered, expected):
    assert acceptable(header, offered) is expected


def test_quality_of_the_most_specific_range():
    ranges = parse("*/*;q=0.1, application/*;q=0.5, application/json;q=0.9")
    assert quality(ranges, JSON) == 0.9
    assert quality(ranges, PROBLEM) == 0.5
    assert quality(ranges, TEXT) == 0.1
    assert quality(parse("text/html"), JSON) == 0.0
    assert quality(None, JSON) == 1.0
