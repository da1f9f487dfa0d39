"""ETags carry the CouchDB revision, strong: ``"2-9af..."`` (pure helpers).

Conditional headers are parsed strictly (RFC 9110 §13.1): a present but empty or
malformed header is an error (400), never treated as absent. If-Match compares
strongly: a weak tag (``W/"..."``) or an unquoted revision matches nothing (412).
If-None-Match compares weakly: ``W/"..."`` matches its revision.
"""

from __future__ import annotations

import re

from .errors import ServiceError
from .problems import Code

ANY = "*"
_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e]*)"')
_UNQUOTED = re.compile(r"[\x21\x23-\x2b\x2d-\x7e]+")  # a bare revision: visible ASCII, no quote or comma


class MalformedCondition(ServiceError, ValueError):
    """An If-Match / If-None-Match header that is empty or not a list of entity tags (400)."""

    code = Code.BAD_REQUEST

    def __init__(self, name: str) -> None:
        super().__init__(f'{name}: "*" or a comma-separated list of entity tags ("<rev>")')

    @property
    def detail(self) -> str:
        return str(self)


def etag(rev: str) -> str:
    return f'"{rev}"'


def _elements(name: str, header: str) -> list[str]:
    parts = [part.strip() for part in header.split(",")]
    if not all(parts):
        raise MalformedCondition(name)
    if ANY in parts and len(parts) > 1:
        raise MalformedCondition(name)
    return parts


def if_match(header: str | None) -> frozenset[str] | None:
    """The revisions an If-Match header accepts (``*`` kept as is); None if absent.
    Weak and unquoted tags are kept out: under strong comparison they match nothing."""
    if header is None:
        return None
    strong = set()
    for part in _elements("If-Match", header):
        match = _TAG.fullmatch(part)
        if part == ANY or (match and not match[1]):
            strong.add(part if part == ANY else match[2])  # type: ignore[index]
        elif not match and not _UNQUOTED.fullmatch(part):
            raise MalformedCondition("If-Match")
    return frozenset(strong)


def none_match(header: str | None, rev: str) -> bool:
    """True when an If-None-Match header matches ``rev`` (weak comparison): answer 304."""
    if header is None:
        return False
    tags = set()
    for part in _elements("If-None-Match", header):
        match = _TAG.fullmatch(part)
        if part != ANY and not match:
            raise MalformedCondition("If-None-Match")
        tags.add(part if part == ANY else match[2])  # type: ignore[index]
    return ANY in tags or rev in tags
