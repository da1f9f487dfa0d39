"""ETags carry the CouchDB revision, strong: ``"2-9af..."`` (pure helpers)."""

from __future__ import annotations


def etag(rev: str) -> str:
    return f'"{rev}"'


def parse(header: str | None) -> frozenset[str] | None:
    """The entity tags of an If-Match / If-None-Match header, unquoted; ``*`` kept as is.
    Weak tags (``W/"..."``) are returned without the prefix. ``None`` if absent or empty."""
    if not header or not header.strip():
        return None
    tags = set()
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if len(tag) >= 2 and tag[0] == tag[-1] == '"':
            tag = tag[1:-1]
        if tag:
            tags.add(tag)
    return frozenset(tags) or None


def none_match(header: str | None, rev: str) -> bool:
    """True when an If-None-Match header matches ``rev`` (weak comparison): answer 304."""
    tags = parse(header)
    return tags is not None and ("*" in tags or rev in tags)
