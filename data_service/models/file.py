"""The models file: reading it and checking it whole (pure but for reading the file).

A models file (YAML or JSON) declares each type's version, delete policy, conflict
policy (``latest`` or ``merge``, see ``conflicts.rules``), required properties and, per
property, a JSON Schema (draft 2020-12) for the value plus our keywords beside it:
``protection``, ``indexed``, ``bcrypt_cost``, ``merge`` (``set`` or ``counter``) and
``immutable``. ``parse_models`` checks the whole file against ``MODELS_SCHEMA`` and then
the semantic rules, raising ``ModelError`` naming the type, the property and the problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from ..protection.kinds import KINDS
from . import migrations
from .formats import FORMAT_CHECKER, FORMATS
from .policies import DEFAULT_BCRYPT_COST, ConflictPolicy, DeletePolicy, MergeKind
from .property import Property
from .reading import Unparsable, parse_json, parse_yaml
from .types import RESERVED, SCHEMA_DIALECT, VERSION_PATTERN, Models, ModelType, is_reserved, pointer

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
TAG_PATTERN = r"^[a-z][a-z0-9_]*_v\d+\.\d+$"
EXTRA_KEYS = ("indexes",)
OUR_KEYWORDS = ("protection", "indexed", "bcrypt_cost", "merge", "immutable")


class ModelError(ValueError):
    """A models file that cannot be used; the message names the type, property and problem."""


# --- the models file's own schema

MODELS_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "type": "object",
    "required": ["types"],
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "types": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"type": "string", "pattern": NAME_PATTERN},
            "additionalProperties": {"$ref": "#/$defs/type"},
        },
    },
    "$defs": {
        "type": {
            "type": "object",
            "required": ["version", "properties"],
            "additionalProperties": False,
            "properties": {
                "version": {"type": "string", "pattern": VERSION_PATTERN},
                "delete": {"enum": [p.value for p in DeletePolicy]},
                "description": {"type": "string"},
                "required": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "properties": {
                    "type": "object",
                    "propertyNames": {
                        "type": "string",
                        "pattern": NAME_PATTERN,
                        "not": {"enum": sorted(RESERVED)},
                    },
                    "additionalProperties": {"$ref": "#/$defs/property"},
                },
                "indexes": {"type": "array"},
                "conflict": {"enum": [p.value for p in ConflictPolicy]},
                "migrations": migrations.schema({"$ref": "#/$defs/property"}),
            },
        },
        "property": {
            "type": "object",
            "properties": {
                "protection": {"enum": list(KINDS)},
                "indexed": {"type": "boolean"},
                "bcrypt_cost": {"type": "integer", "minimum": 10, "maximum": 15},
                "merge": {"enum": [k.value for k in MergeKind]},
                "immutable": {"type": "boolean"},
            },
        },
    },
}
_FILE_VALIDATOR = Draft202012Validator(MODELS_SCHEMA)
_SCHEMA_VALIDATOR = Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=FORMAT_CHECKER)


# --- parsing


def load_models(path: str | os.PathLike) -> Models:
    """Read and parse a models file (.yaml, .yml or .json)."""
    source = str(path)
    suffix = Path(path).suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ModelError(f"{source}: unsupported extension {suffix or '(none)'!r}; use .yaml, .yml or .json")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ModelError(f"{source}: not UTF-8 text") from None
    try:
        data = parse_json(text) if suffix == ".json" else parse_yaml(text)
    except Unparsable as exc:
        raise ModelError(f"{source}: {exc}") from None
    return parse_models(data, source)


def parse_models(data: object, source: str = "models") -> Models:
    """Check parsed models-file data and build Models; raise ModelError listing every problem."""
    if data is None:
        raise ModelError(f"{source}: empty file: no types declared")
    errors = sorted(_FILE_VALIDATOR.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ModelError("\n".join(f"{source}: {_describe(e)}" for e in errors))
    problems: list[str] = []
    declared: dict[str, dict] = data["types"]  # type: ignore[index]  # its schema was checked above
    types = {name: _model_type(name, spec, problems) for name, spec in declared.items()}
    if problems:
        raise ModelError("\n".join(f"{source}: {p}" for p in problems))
    return Models(types)


def _model_type(name: str, spec: dict, problems: list[str]) -> ModelType:
    where = f"type {name!r}"
    major, minor = (int(n) for n in spec["version"].split("."))
    properties = {
        pname: _property(pname, pspec, f"{where}, property {pname!r}", problems)
        for pname, pspec in spec["properties"].items()
    }
    for rname in spec.get("required", ()):
        if rname not in properties:
            problems.append(f"{where}: required names undeclared property {rname!r}")
    policy = ConflictPolicy(spec.get("conflict", ConflictPolicy.LATEST))
    for prop in properties.values():
        if prop.merge and policy is not ConflictPolicy.MERGE:
            problems.append(
                f"{where}, property {prop.name!r}: merge: {prop.merge} needs conflict: merge "
                f"on the type (it is {policy})"
            )
    required = tuple(spec.get("required", ()))
    model = ModelType(
        name=name,
        major=major,
        minor=minor,
        properties=properties,
        required=required,
        delete_policy=DeletePolicy(spec.get("delete", DeletePolicy.HARD)),
        conflict_policy=policy,
        extras={k: spec[k] for k in EXTRA_KEYS if k in spec},
        description=spec.get("description"),
        migrations=migrations.parse(
            name, spec, properties, required, major, lambda n, s, w: _property(n, s, w, problems), problems
        ),
    )
    if not re.fullmatch(TAG_PATTERN, model.tag):
        problems.append(f"{where}: tag {model.tag!r} does not match {TAG_PATTERN}")
    return model


def _property(name: str, spec: dict, where: str, problems: list[str]) -> Property:
    kind = KINDS[spec.get("protection", "plain")]
    cost = spec.get("bcrypt_cost")
    schema = {k: v for k, v in spec.items() if k not in OUR_KEYWORDS}
    declared = schema.get("type", "any")
    if cost is not None and not kind.slow:
        problems.append(f"{where}: bcrypt_cost is only allowed with protection bcrypt, not {kind.name}")
    if kind.strings_only and declared not in ("string", ["string"]):
        problems.append(
            f"{where}: protection {kind.name!r} needs type string "
            f"(a hashed value is compared as a string), not {declared}"
        )
    if spec.get("indexed") and not kind.queryable:
        problems.append(
            f"{where}: cannot be indexed with protection {kind.name!r} (its stored form differs for every write)"
        )
    merge = MergeKind(spec["merge"]) if "merge" in spec else None
    immutable = bool(spec.get("immutable", False))
    if merge is MergeKind.SET and declared not in ("array", ["array"]):
        problems.append(f"{where}: merge: set needs type array, not {declared}")
    if merge is MergeKind.COUNTER:
        if declared not in ("integer", "number", ["integer"], ["number"]):
            problems.append(f"{where}: merge: counter needs type integer or number, not {declared}")
        if kind.confidential:
            problems.append(
                f"{where}: merge: counter needs protection plain, not {kind.name} "
                "(its increments are kept in clear in the document metadata)"
            )
    if merge and immutable:
        problems.append(f"{where}: merge: {merge} and immutable exclude each other (an immutable value never changes)")
    if immutable and kind.slow:
        problems.append(
            f"{where}: immutable cannot be combined with protection {kind.name} "
            "(a bcrypt hash cannot be compared with another one)"
        )
    error = best_match(_SCHEMA_VALIDATOR.iter_errors(schema))
    if error is not None:
        at = pointer(list(error.absolute_path)) or "/"
        problems.append(f"{where}: invalid JSON Schema at {at}: {error.message}")
    else:
        problems.extend(f"{where}: {p}" for p in _unsupported(schema, ""))
    return Property(
        name=name,
        schema=schema,
        kind=kind,
        indexed=bool(spec.get("indexed", False)),
        bcrypt_cost=(int(cost) if cost is not None else DEFAULT_BCRYPT_COST) if kind.slow else None,
        merge=merge,
        immutable=immutable,
    )


_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SUBSCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")
_SUBSCHEMAS = (
    "items",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
)
_SELF_CONTAINED = ("$ref", "$dynamicRef", "$id", "$schema")


def _unsupported(schema: object, at: str) -> Iterator[str]:
    """Valid JSON Schema this service would not honour: references, unchecked formats,
    string types with non-string enum values (e.g. an unquoted number)."""
    if not isinstance(schema, dict):
        return
    for keyword in _SELF_CONTAINED:
        if keyword in schema:
            yield f"{keyword} at {at or '/'} is not supported: property schemas must be self-contained"
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt not in FORMATS:
        yield f"format {fmt!r} at {at or '/'} is not checked; use one of {', '.join(FORMATS)}"
    if schema.get("type") == "string":
        values = list(schema.get("enum", []))
        if "const" in schema:
            values.append(schema["const"])
        for value in values:
            if not isinstance(value, str):
                yield f"enum value {value!r} at {at or '/'} is not a string (quote it)"
    for keyword in _SUBSCHEMA_MAPS:
        for key, sub in (schema.get(keyword) or {}).items():
            yield from _unsupported(sub, f"{at}/{keyword}/{key}")
    for keyword in _SUBSCHEMA_LISTS:
        for i, sub in enumerate(schema.get(keyword) or []):
            yield from _unsupported(sub, f"{at}/{keyword}/{i}")
    for keyword in _SUBSCHEMAS:
        if keyword in schema:
            yield from _unsupported(schema[keyword], f"{at}/{keyword}")


def _describe(error: ValidationError) -> str:
    """A models-file schema violation as 'type 'x', property 'y': problem'."""
    path = [str(p) for p in error.absolute_path]
    where: list[str] = []
    if len(path) >= 2 and path[0] == "types":
        where.append(f"type {path[1]!r}")
        if len(path) >= 4 and path[2] == "migrations":
            where.append(f"migration from version {path[3]}")
            if len(path) >= 6 and path[4] == "steps":
                where.append(f"step {int(path[5]) + 1}")
                key = ".".join(path[6:])
            elif len(path) >= 6 and path[4] == "properties":
                where.append(f"property {path[5]!r}")
                key = ".".join(path[6:])
            else:
                key = ".".join(path[4:])
        elif len(path) >= 4 and path[2] == "properties":
            where.append(f"property {path[3]!r}")
            key = ".".join(path[4:])
        else:
            key = ".".join(path[2:])
    else:
        key = ".".join(path)
    prefix = ", ".join(where) + ": " if where else ""
    return prefix + _problem(error, key, path)


def _problem(error: ValidationError, key: str, path: list[str]) -> str:
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.schema_path and "migrations" in path:
        if path[-1] == "migrations":
            return f"migrations: {instance!r} is not a major version number"
        return f"unknown step {instance!r} (one of {', '.join(migrations.STEP_SCHEMAS)})"
    if "propertyNames" in error.schema_path:
        what = "property name" if path[-1:] == ["properties"] else "type name"
        if isinstance(instance, str) and what == "property name" and is_reserved(instance):
            return f"{what} {instance!r} is reserved (id, type, meta, sig and names starting with '_')"
        return f"{what} {instance!r} is invalid: must be a string matching {NAME_PATTERN}"
    if keyword == "enum":
        return f"{key} {instance!r} is not one of {', '.join(map(str, expected))}"
    if keyword == "type":
        hint = ' (quote it, e.g. "1.0")' if key == "version" and isinstance(instance, (int, float)) else ""
        subject = key or ("the file" if not path else "")
        return f"{subject} must be {_json_type(expected)}, not {_json_type(instance)}{hint}".lstrip()
    if keyword == "pattern" and key == "version":
        return f'version {instance!r} is not "major.minor" (e.g. "1.0")'
    if keyword == "required":
        missing = [n for n in expected if n not in instance]
        return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
    if keyword == "additionalProperties":
        unknown = [k for k in instance if k not in error.schema.get("properties", {})]
        allowed = ", ".join(error.schema.get("properties", {}))
        return f"unknown key {', '.join(map(repr, unknown))} (allowed: {allowed})"
    if keyword == "minProperties" and key == "types":
        return "no types declared"
    return f"{key}: {error.message}" if key else error.message


def _json_type(value: object) -> str:
    """'an object' for {} or "object"; JSON's names for Python values in messages."""
    if isinstance(value, str) and value in ("object", "array", "string", "number", "integer", "boolean", "null"):
        name = value
    else:
        name = {
            dict: "object",
            list: "array",
            str: "string",
            bool: "boolean",
            type(None): "null",
            int: "integer",
            float: "number",
        }.get(type(value), type(value).__name__)
    return ("an " if name[0] in "aeiou" else "a ") + name
