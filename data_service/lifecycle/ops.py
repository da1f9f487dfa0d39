"""What a caller asks of a document (pure)."""

from __future__ import annotations

from enum import StrEnum


class Op(StrEnum):
    """What a caller asks of a document."""

    CREATE = "create"
    REPLACE = "replace"
    PATCH = "patch"
    DELETE = "delete"
