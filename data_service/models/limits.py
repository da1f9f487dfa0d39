"""What any request body may hold, checked on the decoded JSON before anything else (pure).

* Numbers: at most ±(2^53−1) (``MAX_SAFE``). Beyond it an integer cannot round-trip
  through JavaScript (CouchDB's views, pouchdb-server, browsers): it comes back rounded
  and the document's signature no longer matches. Every double that large is integral
  and is written back by JavaScript as an integer, so large floats (``1e300``) are
  refused alike. Non-finite numbers never get here: the JSON parser refuses them.
* Nesting: at most ``MAX_NESTING`` arrays/objects, the body itself counted. Deeper
  values cannot be encoded (orjson writes 254 levels) or are not meant seriously.

Checked iteratively: a hostile depth cannot exhaust the stack. Messages name the path
(a JSON Pointer, cut short when deep), never the value.
"""

from __future__ import annotations

from typing import Any

from ..problems import Code
from .types import MAX_SAFE, ValidationFailed, Violation, pointer

MAX_NESTING = 64
_SHOWN_PARTS = 8  # of a deep path, in a message


class NumberOutOfRange(ValidationFailed):
    code = Code.NUMBER_OUT_OF_RANGE


class NestedTooDeep(ValidationFailed):
    code = Code.NESTED_TOO_DEEP


def check_limits(body: Any) -> None:
    """NestedTooDeep or NumberOutOfRange (listing the paths) unless ``body`` is within the limits."""
    numbers: list[Violation] = []
    stack: list[tuple[Any, tuple, int]] = [(body, (), 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING:
                raise NestedTooDeep([Violation(_pointer(path), f"nested more than {MAX_NESTING} levels deep")])
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((child, (*path, key), depth + 1) for key, child in pairs)
        elif isinstance(item, int | float) and not isinstance(item, bool) and not -MAX_SAFE <= item <= MAX_SAFE:
            numbers.append(
                Violation(_pointer(path), f"is beyond ±{MAX_SAFE} (2^53-1), which JSON cannot carry exactly")
            )
    if numbers:
        raise NumberOutOfRange(numbers)


def _pointer(path: tuple) -> str:
    if len(path) <= _SHOWN_PARTS:
        return pointer(list(path))
    return pointer(list(path[:_SHOWN_PARTS])) + "/..."
