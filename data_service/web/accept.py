"""What a request's headers prefer (pure): ``Accept`` (RFC 9110 §12.5.1) — may any of
the media types an operation produces be sent? — and ``Cache-Control`` — does the caller
want CouchDB's version rather than the read cache's (``wants_fresh``)?

Only the question 406 needs is answered: each offered type gets the quality of the most
specific range that matches it (``type/subtype`` over ``type/*`` over ``*/*``), and it is
acceptable when that quality is above zero. Members that are not media ranges are
ignored (a sender's typo must not lock it out); a header with no valid member at all is
treated as absent, which accepts anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")  # RFC 9110 tchar, lower-cased


@dataclass(frozen=True)
class MediaRange:
    type: str  # lower-cased; "*" for any
    subtype: str
    quality: float

    def specificity(self, media_type: str) -> int:
        """-1 if this range does not match ``media_type`` (``type/subtype``, lower-case), else
        how specific the match is: 2 exact, 1 ``type/*``, 0 ``*/*``."""
        kind, _, sub = media_type.partition("/")
        if self.type == "*":
            return 0
        if self.type != kind:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == sub else -1


def parse(header: str | None) -> list[MediaRange] | None:
    """The valid media ranges of an ``Accept`` header; ``None`` when the header is absent,
    empty or has no valid member (no preference: anything is acceptable)."""
    if header is None:
        return None
    ranges = [r for member in header.split(",") if (r := _media_range(member)) is not None]
    return ranges or None


def _media_range(member: str) -> MediaRange | None:
    essence, *parameters = member.split(";")
    kind, slash, sub = essence.strip().lower().partition("/")
    if not (slash and _is_token(kind) and _is_token(sub)) or (kind == "*" and sub != "*"):
        return None
    quality = 1.0
    for parameter in parameters:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "q":
            parsed = _quality(value.strip())
            if parsed is None:
                return None
            quality = parsed
    return MediaRange(kind, sub, quality)


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN for c in text)


def _quality(text: str) -> float | None:
    """RFC 9110 qvalue: ``0``/``1`` with at most three decimals, at most 1."""
    whole, dot, decimals = text.partition(".")
    if whole not in ("0", "1") or len(decimals) > 3 or not all(c in "0123456789" for c in decimals):
        return None
    if dot and whole == "1" and decimals.strip("0"):
        return None
    return float(text.rstrip(".")) if dot else float(whole)


def quality(ranges: list[MediaRange] | None, media_type: str) -> float:
    """The quality ``ranges`` give ``media_type`` (0 when no range matches it)."""
    if ranges is None:
        return 1.0
    best, found = -1, 0.0
    for media_range in ranges:
        rank = media_range.specificity(media_type.lower())
        if rank > best:  # equally specific duplicates: the first one counts
            best, found = rank, media_range.quality
    return found if best >= 0 else 0.0


def acceptable(header: str | None, offered: Iterable[str]) -> bool:
    """Whether the ``Accept`` header allows at least one of ``offered`` media types."""
    ranges = parse(header)
    return any(quality(ranges, media_type) > 0 for media_type in offered)


def wants_fresh(cache_control: str | None) -> bool:
    """A request's ``Cache-Control`` asks for CouchDB's version (``no-cache``,
    ``no-store`` or ``max-age=0``) rather than the cached one."""
    if not cache_control:
        return False
    for part in cache_control.lower().split(","):
        name, _, value = part.strip().partition("=")
        if name in ("no-cache", "no-store") or (name == "max-age" and value.strip().strip('"') == "0"):
            return True
    return False
