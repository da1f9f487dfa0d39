"""One step of an install: what it says, what it would change (pure)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


class InstallFailed(Exception):
    """The database is in a state the installer will not overwrite; the message says why."""


@dataclass
class Step:
    """One line of an install. ``kind`` is create, update, remove, unchanged or note;
    ``apply`` is None when there is nothing to do; ``warm`` names a design doc whose
    view to query once applied."""

    kind: str
    text: str
    apply: Callable[[], Awaitable[Any]] | None = None
    warm: str | None = None
