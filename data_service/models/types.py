"""Declared document types and request-body validation (pure).

``ModelType.validate`` checks a request body with validators compiled once (one per
property); its messages never echo the value of a protected property.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ..canonical import MAX_DEPTH, NotCanonical, check
from ..envelope import ID_PATTERN, tag_of
from ..errors import ServiceError
from ..problems import Code
from ..protection.kinds import Slot
from .formats import FORMAT_CHECKER, utc_date_time
from .migrations import Migration
from .policies import DEFAULT_BCRYPT_COST, ConflictPolicy, DeletePolicy
from .property import Property

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
VERSION_PATTERN = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$"
RESERVED = frozenset({"id", "type", "meta", "sig"})  # and every name starting with "_"
MAX_SAFE = 2**53 - 1  # the largest integer JSON carries exactly everywhere (models.limits refuses beyond it)
MAX_VALUE_DEPTH = MAX_DEPTH - 10  # a property value sits inside the document, and may inside an array


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith("_")


@dataclass(frozen=True)
class Violation:
    """One schema violation of a request body at ``path`` (a JSON Pointer, "" for the root)."""

    path: str
    message: str


class ValidationFailed(ServiceError, ValueError):
    """A body that does not match its type; ``violations`` lists them all, sorted by path."""

    code = Code.VALIDATION_FAILED

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = sorted(violations, key=lambda v: (v.path, v.message))
        super().__init__("; ".join(f"{v.path or '/'}: {v.message}" for v in self.violations))

    def extensions(self) -> dict[str, Any]:
        return {"errors": [{"path": v.path, "message": v.message} for v in self.violations]}


class ReservedNames(ValidationFailed):
    """The body sets names that belong to the service (id, type, meta, ...)."""

    code = Code.RESERVED_PROPERTY


def check_reserved(body: dict) -> None:
    reserved = [Violation(pointer([name]), "reserved name") for name in body if is_reserved(name)]
    if reserved:
        raise ReservedNames(reserved)


@dataclass(frozen=True)
class ModelType:
    name: str
    major: int
    minor: int
    properties: dict[str, Property]
    required: tuple[str, ...] = ()
    delete_policy: DeletePolicy = DeletePolicy.HARD
    conflict_policy: ConflictPolicy = ConflictPolicy.LATEST
    extras: dict = field(default_factory=dict)
    description: str | None = None
    migrations: dict[int, Migration] = field(default_factory=dict)  # by the older major they upgrade

    def migrates_from(self, major: int) -> bool:
        """Whether documents of an older ``major`` are read upgraded (``migrations``)."""
        return major in self.migrations

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def tag(self) -> str:
        """The stored ``type`` tag, e.g. ``user_v1.0``."""
        return f"{self.name}_v{self.version}"

    def slot(self, name: str, docid: str) -> Slot:
        """Where property ``name`` of document ``docid`` lives (what its protection binds)."""
        return Slot(self.name, name, docid, self.properties[name].bcrypt_cost or DEFAULT_BCRYPT_COST)

    def input_schema(self) -> dict:
        """JSON Schema of a create body."""
        return {
            "$schema": SCHEMA_DIALECT,
            "title": self.tag,
            "type": "object",
            "properties": {name: _described(p) for name, p in self.properties.items()},
            "required": list(self.required),
            "additionalProperties": False,
        }

    def replacement_schema(self) -> dict:
        """JSON Schema of a replace (PUT) body: a create body, but that a hidden property
        it omits is kept as stored, and ``null`` removes an optional one (``Lifecycle.replace``)."""
        schema = self.input_schema()
        schema["title"] = f"{self.tag} replacement"
        schema["required"] = [name for name in self.required if name not in self.hidden]
        for name in self.hidden - set(self.required):
            schema["properties"][name] = {"anyOf": [schema["properties"][name], {"type": "null"}]}
        return schema

    def output_schema(self) -> dict:
        """JSON Schema of the representation returned to callers (hashed properties absent)."""
        date_time = {"type": "string", "format": "date-time"}
        readable = {name: copy.deepcopy(p.schema) for name, p in self.properties.items() if p.readable}
        meta = {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "version": {"type": "string", "pattern": VERSION_PATTERN},
                "created_at": date_time,
                "updated_at": dict(date_time),
                "deleted_at": dict(date_time),
            },
            "required": ["type", "version", "created_at", "updated_at"],
            "additionalProperties": False,
        }
        return {
            "$schema": SCHEMA_DIALECT,
            "title": self.tag,
            "type": "object",
            "properties": {"id": {"type": "string", "pattern": ID_PATTERN.pattern}, "meta": meta, **readable},
            "required": ["id", "meta", *(n for n in self.required if n in readable)],
            "additionalProperties": False,
        }

    def patch_schema(self) -> dict:
        """JSON Schema of a PATCH body (RFC 7396 merge patch): every property optional,
        ``null`` removes an optional one (nested objects likewise, key by key); a name the
        type does not declare may only be ``null`` (removing nothing). What the merged
        document must satisfy as a whole (nested ``required``, ``maxProperties``) is
        checked after merging and cannot be said here."""
        return {
            "$schema": SCHEMA_DIALECT,
            "title": f"{self.tag} merge patch",
            "type": "object",
            "properties": {
                name: _patch_value(_described(p), name not in self.required) for name, p in self.properties.items()
            },
            **_undeclared_null(),
            "propertyNames": {"not": {"anyOf": [{"enum": sorted(RESERVED)}, {"pattern": "^_"}]}},
        }

    def verify_schema(self) -> dict | None:
        """JSON Schema of a ``/verify`` body: candidates for the hashed (write-only)
        properties, at least one; None when the type has none."""
        hashed = {name: p for name, p in self.properties.items() if name in self.hidden}  # declared order
        if not hashed:
            return None
        candidate = {"type": "string"}
        return {
            "$schema": SCHEMA_DIALECT,
            "title": f"{self.tag} candidates",
            "type": "object",
            "properties": {name: _described(p, candidate) for name, p in hashed.items()},
            "minProperties": 1,
            "additionalProperties": False,
        }

    @functools.cached_property
    def hidden(self) -> frozenset[str]:
        """Properties never returned to callers (bcrypt, sha3-512): write-only."""
        return frozenset(name for name, p in self.properties.items() if not p.readable)

    @functools.cached_property
    def date_times(self) -> frozenset[str]:
        """Properties declared ``format: date-time``: stored in UTC ``Z`` form (``stored_value``)."""
        return frozenset(name for name, p in self.properties.items() if p.schema.get("format") == "date-time")

    def stored_value(self, name: str, value: Any) -> Any:
        """A valid clear value as it is stored: date-times normalised to UTC ``Z``."""
        return utc_date_time(value) if name in self.date_times and isinstance(value, str) else value

    @functools.cached_property
    def _validators(self) -> dict[str, Draft202012Validator]:
        # One compiled validator per property (twice as fast as one for the whole body);
        # required, unknown and reserved names are checked by validate() itself.
        return {
            name: Draft202012Validator(p.schema, format_checker=FORMAT_CHECKER) for name, p in self.properties.items()
        }

    def validate(self, body: object, kept: frozenset[str] = frozenset()) -> None:
        """Raise ValidationFailed listing every violation of ``body``. ``kept`` names
        properties present in stored form only (hashed ones a PATCH leaves alone):
        they satisfy ``required`` without being validated."""
        if not isinstance(body, dict):
            raise ValidationFailed([Violation("", "must be a JSON object")])
        found: set[Violation] = set()
        for name, value in body.items():
            if name not in self.properties:
                found.add(Violation(pointer([name]), "reserved name" if is_reserved(name) else "unknown property"))
            else:
                found.update(self.check_value(name, value))
        for name in self.required:
            if name not in body and name not in kept:
                found.add(Violation(pointer([name]), "is required"))
        if found:
            raise ValidationFailed(list(found))

    def check_value(self, name: str, value: object) -> list[Violation]:
        """The violations of one property's value."""
        prop = self.properties[name]
        try:  # first, iteratively: deeper values cannot be signed (nor validated without recursing)
            check(value, MAX_VALUE_DEPTH)
        except NotCanonical as exc:
            return [Violation(pointer([name]), str(exc))]
        echo = not prop.kind.confidential
        found = {v for error in self._validators[name].iter_errors(value) for v in _violations(error, name, echo)}
        limit = prop.kind.max_bytes
        if limit is not None and isinstance(value, str) and len(value.encode()) > limit:
            found.add(Violation(pointer([name]), f"is longer than {limit} bytes"))
        return sorted(found, key=lambda v: (v.path, v.message))


@dataclass(frozen=True)
class Models:
    types: dict[str, ModelType]

    def get(self, name: str) -> ModelType | None:
        return self.types.get(name)

    def __iter__(self) -> Iterator[ModelType]:
        return iter(self.types.values())

    def __len__(self) -> int:
        return len(self.types)


def _described(prop: Property, schema: dict | None = None) -> dict:
    """A copy of ``schema`` (default: the property's) that also states the protection's byte
    limit: JSON Schema's ``maxLength`` counts characters, bcrypt counts UTF-8 bytes."""
    out = copy.deepcopy(prop.schema if schema is None else schema)
    if schema is None and out.get("type") in ("integer", "number"):  # what JSON carries exactly (``limits``)
        out.setdefault("minimum", -MAX_SAFE)
        out.setdefault("maximum", MAX_SAFE)
    limit = prop.kind.max_bytes
    if limit is not None:
        note = f"At most {limit} bytes in UTF-8 ({prop.protection}'s limit); a longer value is a 422, never truncated."
        out["x-max-bytes"] = limit
        out["description"] = f"{out['description']} {note}" if out.get("description") else note
    return out


# Keywords a merge patch of an object cannot honour: they constrain the merged whole.
_WHOLE_OBJECT = ("required", "minProperties", "maxProperties", "dependentRequired")
# Keywords whose meaning for a patch is not derived here: such an object is patched by any object.
_UNDERIVED = (
    "$ref",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "dependentSchemas",
    "unevaluatedProperties",
    "propertyNames",
)


# Names an object does not declare may only be null in a merge patch (removing nothing).
# ``unevaluatedProperties``, not ``additionalProperties``: code generators turn the latter
# into an index signature (``[key: string]: null``) that no declared property satisfies.
def _undeclared_null() -> dict:
    return {"unevaluatedProperties": {"const": None}}


def _patch_value(schema: dict, removable: bool) -> dict:
    """What a merge patch may hold for a value of ``schema``: objects merge key by key
    (RFC 7396), anything else is replaced whole; ``null`` removes a ``removable`` one."""
    if schema.get("type") == "object":
        if any(keyword in schema for keyword in _UNDERIVED):
            value: dict = {"type": "object"}
        else:
            required = set(schema.get("required", ()))
            value = {k: v for k, v in schema.items() if k not in (*_WHOLE_OBJECT, "properties", "additionalProperties")}
            if "properties" in schema:
                value["properties"] = {
                    name: _patch_value(sub, name not in required) for name, sub in schema["properties"].items()
                }
            extra = schema.get("additionalProperties", True)
            if isinstance(extra, dict):
                value["additionalProperties"] = _patch_value(extra, True)
            elif not extra:
                value.update(_undeclared_null())
            if "patternProperties" in schema:
                value["patternProperties"] = {p: _patch_value(s, True) for p, s in schema["patternProperties"].items()}
    else:
        value = schema
    return _or_null(value) if removable else value


def _or_null(schema: dict) -> dict:
    """``schema`` or ``null``. A single declared type becomes a type list (with ``null``
    added to an ``enum``): the form code generators read as a nullable value."""
    declared = schema.get("type")
    if isinstance(declared, str) and "const" not in schema:
        nullable = {**schema, "type": [declared, "null"]}
        if "enum" in schema:
            nullable["enum"] = [*schema["enum"], None]
        return nullable
    return {"anyOf": [schema, {"type": "null"}]}


def _violations(error: ValidationError, name: str, echo: bool) -> list[Violation]:
    path = [name, *error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [n for n in error.validator_value if n not in error.instance]
        return [Violation(pointer([*path, n]), "is required") for n in missing]
    return [Violation(pointer(path), error.message if echo else _redacted(error))]


def pointer(parts: list) -> str:
    """A JSON Pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


_BOUNDS = {
    "minLength": "is shorter than {} characters",
    "maxLength": "is longer than {} characters",
    "minimum": "is less than {}",
    "maximum": "is greater than {}",
    "exclusiveMinimum": "is not greater than {}",
    "exclusiveMaximum": "is not less than {}",
    "multipleOf": "is not a multiple of {}",
    "minItems": "has fewer than {} items",
    "maxItems": "has more than {} items",
    "minProperties": "has fewer than {} properties",
    "maxProperties": "has more than {} properties",
}


def _redacted(error: ValidationError) -> str:
    """A message for a protected property's violation: built from the schema, never the value."""
    keyword, expected = error.validator, error.validator_value
    if keyword == "type":
        names = expected if isinstance(expected, list) else [expected]
        return f"must be of type {' or '.join(names)}"
    if keyword == "format":
        return f"is not a valid {expected}"
    if keyword == "pattern":
        return f"does not match the pattern {expected}"
    if keyword in ("enum", "const"):
        return "is not one of the allowed values"
    if keyword in _BOUNDS:
        return _BOUNDS[keyword].format(expected)
    return f"does not match the declared schema ({keyword})"


def is_of(model: ModelType, doc: dict) -> bool:
    """A stored doc belongs to ``model`` when its tag has the same name and major version."""
    tag = tag_of(doc)
    return tag is not None and tag[:2] == (model.name, model.major)


def is_older(model: ModelType, doc: dict) -> bool:
    """A stored doc of an older major of ``model`` that its migrations upgrade."""
    tag = tag_of(doc)
    return tag is not None and tag[0] == model.name and tag[1] < model.major and model.migrates_from(tag[1])


def model_of(models: Iterable[ModelType], doc: dict) -> ModelType | None:
    """The declared type that reads a stored doc (its own major, or upgraded), if any."""
    return next((model for model in models if is_of(model, doc) or is_older(model, doc)), None)
