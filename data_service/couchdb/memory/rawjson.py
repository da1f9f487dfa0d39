"""Documents CouchDB keeps that orjson cannot hold: nested deeper than orjson reads (1,024
levels) or writes (254), or with integers beyond 64 bits. CouchDB stores such a document and
answers with it; so does the in-memory CouchDB: the members of its top level are found by
scanning (which checks the whole text is JSON), the special ones (``_id``, ``_rev``...) are
read, and every other value is kept as the text it came in (``orjson.Fragment``), written
back exactly as sent. Every other document takes the fast path: orjson, once.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .http import SLOW, bad_request, parse

_TOKEN = re.compile(
    rb"[ \t\n\r]*(?:(?P<open>[{\[])|(?P<close>[}\]])|(?P<comma>,)|(?P<colon>:)"
    rb'|(?P<string>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")'
    rb"|(?P<scalar>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null))"
)
Span = tuple[Any, int, int]  # a member's key (None in an array), where its value starts and ends


def read_document(raw: bytes) -> Any:
    """A document body (``PUT``, ``POST /db``)."""
    value = parse(raw)
    if value is not SLOW:
        return value
    try:
        return _document(raw, _whole(raw))
    except orjson.JSONDecodeError:  # a special member orjson cannot read
        raise bad_request("invalid UTF-8 JSON") from None


def read_bulk(raw: bytes) -> Any:
    """A ``_bulk_docs`` body: ``docs`` read as documents."""
    value = parse(raw)
    if value is not SLOW:
        return value
    try:
        return {key: _bulk_member(raw, key, start, end) for key, start, end in _whole(raw)}
    except orjson.JSONDecodeError:
        raise bad_request("invalid UTF-8 JSON") from None


def _bulk_member(raw: bytes, key: Any, start: int, end: int) -> Any:
    if key != "docs" or raw[start : start + 1] != b"[":
        return orjson.loads(raw[start:end])
    docs, _ = _members(raw, start)
    return [_document(raw, _members(raw, s)[0]) if raw[s : s + 1] == b"{" else None for _, s, _ in docs]


def _whole(raw: bytes) -> list[Span]:
    """The members of the object (or array) ``raw`` is; 400 unless it is JSON, all of it."""
    try:
        raw.decode()
        start = len(raw) - len(raw.lstrip())
        members, end = _members(raw, start)
    except (UnicodeDecodeError, ValueError):
        raise bad_request("invalid UTF-8 JSON") from None
    if raw[end:].strip():
        raise bad_request("invalid UTF-8 JSON")
    return members


def _document(raw: bytes, members: list[Span]) -> Any:
    if members and members[0][0] is None:  # an array: no document
        return [orjson.Fragment(raw[start:end]) for _, start, end in members]
    return {
        key: orjson.loads(raw[start:end]) if key.startswith("_") else orjson.Fragment(raw[start:end])
        for key, start, end in members
    }


def _members(raw: bytes, start: int) -> tuple[list[Span], int]:
    """The members (or elements) of the container at ``raw[start]`` and where it ends;
    ValueError unless it is JSON. A state machine over tokens: no recursion, any depth."""
    stack: list[int] = []  # the open containers' opening bytes
    want = "value"  # value | key | colon | next; "…?" also accepts the close of an empty container
    members: list[Span] = []
    key: Any = None
    value_start = pos = start
    while match := _TOKEN.match(raw, pos):
        kind = match.lastgroup or ""
        at, pos = match.start(kind), match.end()
        if kind == "open" and want in ("value", "value?"):
            if len(stack) == 1:
                value_start = at
            stack.append(raw[at])
            want = "key?" if raw[at] == ord("{") else "value?"
        elif kind == "close" and want in ("next", "key?", "value?") and stack and stack.pop() + 2 == raw[at]:
            if len(stack) == 1:
                members.append((key, value_start, pos))
            if not stack:
                return members, pos
            want = "next"
        elif kind == "comma" and want == "next":
            want = "key" if stack[-1] == ord("{") else "value"
        elif kind == "colon" and want == "colon":
            want = "value"
        elif kind == "string" and want in ("key", "key?"):
            key = orjson.loads(match.group(kind)) if len(stack) == 1 else key
            want = "colon"
        elif kind in ("string", "scalar") and want in ("value", "value?") and stack:
            if len(stack) == 1:
                members.append((key, at, pos))
            want = "next"
        else:
            break
    raise ValueError("not JSON")
