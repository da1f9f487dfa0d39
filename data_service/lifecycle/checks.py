"""What can be checked of a write's values before the current document is read (pure)."""

from __future__ import annotations

from typing import Any

from ..models import ModelType, ValidationFailed, Violation, check_reserved
from .ops import Op


def check(op: Op, model: ModelType, values: Any) -> None:
    """What can be checked of an operation's values before the current document is
    read: the create or replace body, or the merge patch (a delete has none)."""
    if op is Op.CREATE:
        if isinstance(values, dict):
            check_reserved(values)
        model.validate(values)
    elif op is Op.REPLACE:
        _check_replacement(model, values)
    elif op is Op.PATCH:
        _check_patch(model, values)


def slow_values(model: ModelType, values: Any) -> dict[str, Any]:
    """The values the store must protect in its thread pool (bcrypt) and pass as ``hashed``."""
    if not isinstance(values, dict):
        return {}
    return {
        name: value
        for name, value in values.items()
        if value is not None and name in model.properties and model.properties[name].kind.slow
    }


def _check_replacement(model: ModelType, body: Any) -> None:
    """A replace body: as a create's, but hidden properties (never returned, so a body
    built from a GET lacks them) may be omitted — they are kept — or null: removed."""
    if not isinstance(body, dict):
        model.validate(body)
        return
    check_reserved(body)
    hidden = model.hidden
    model.validate(
        {k: v for k, v in body.items() if not (k in hidden and v is None)}, kept=frozenset(hidden - set(body))
    )


def _check_patch(model: ModelType, patch: Any) -> None:
    """What can be checked of a merge patch before it is applied."""
    if not isinstance(patch, dict):
        raise ValidationFailed([Violation("", "a merge patch for a document must be an object")])
    check_reserved(patch)
    wrong = [
        v
        for name, value in patch.items()
        if value is not None and name in model.properties and model.properties[name].kind.slow
        for v in model.check_value(name, value)
    ]
    if wrong:
        raise ValidationFailed(wrong)
