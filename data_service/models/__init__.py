"""Versioned document types declared in a models file (pure).

``policies``: delete, conflict and merge policies; ``formats``: string formats;
``types``: the declared types and body validation; ``file``: reading and checking
a models file; ``migrations``: how older major versions are upgraded.
"""

from .file import ModelError, load_models, parse_models
from .limits import MAX_NESTING, MAX_SAFE, NestedTooDeep, NumberOutOfRange, check_limits
from .migrations import Hidden, MigrationFailed, Values
from .policies import DEFAULT_BCRYPT_COST, ConflictPolicy, DeletePolicy, MergeKind
from .types import (
    RESERVED,
    Models,
    ModelType,
    Property,
    ReservedNames,
    ValidationFailed,
    Violation,
    check_reserved,
    is_of,
    is_older,
    is_reserved,
    model_of,
    pointer,
)

__all__ = [
    "DEFAULT_BCRYPT_COST",
    "MAX_NESTING",
    "MAX_SAFE",
    "RESERVED",
    "ConflictPolicy",
    "DeletePolicy",
    "Hidden",
    "MergeKind",
    "MigrationFailed",
    "ModelError",
    "ModelType",
    "Models",
    "NestedTooDeep",
    "NumberOutOfRange",
    "Property",
    "ReservedNames",
    "ValidationFailed",
    "Values",
    "Violation",
    "check_limits",
    "check_reserved",
    "is_of",
    "is_older",
    "is_reserved",
    "load_models",
    "model_of",
    "parse_models",
    "pointer",
]
