"""The base of every error the service answers with a problem (pure).

Each domain exception names its row of the error table (``problems.TABLE``) in
``code`` and may add members to the problem body (``extensions``) and headers;
``web.problem`` renders them. Domain exceptions also subclass the builtin they
resemble (``KeyError`` for not found, ``ValueError`` for bad input), aiocouch style.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .problems import Code


class ServiceError(Exception):
    code: ClassVar[Code] = Code.INTERNAL_ERROR

    @property
    def detail(self) -> str | None:
        """Text for the caller: never a protected value."""
        return None

    def extensions(self) -> dict[str, Any]:
        return {}

    def headers(self) -> dict[str, str]:
        return {}

    def logged(self) -> str:
        """What a log line may say of it (never a protected value): its class by default."""
        return type(self).__name__
