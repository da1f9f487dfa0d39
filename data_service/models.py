"""The models file: versioned document types, their properties and protections (pure).

A models file (YAML or JSON) declares each type's version, delete policy, conflict
policy (``latest`` or ``merge``, see ``reconcile.py``), required properties and, per
property, a JSON Schema (draft 2020-12) for the value plus our keywords beside it:
``protection``, ``indexed``, ``bcrypt_cost``, ``merge`` (``set`` or ``counter``) and
``immutable``. ``parse_models`` checks the whole file against ``MODELS_SCHEMA`` and then
the semantic rules, raising ``ModelError`` naming the type, the property and the problem. ``ModelType.validate``
checks a request body with validators compiled once (one per property); its messages never
echo the value of a protected property.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match

PROTECTIONS = ("plain", "bcrypt", "sha3-512", "encrypt", "encrypt-deterministic")
DELETE_POLICIES = ("hard", "soft")
CONFLICT_POLICIES = ("latest", "merge")
MERGE_KINDS = ("set", "counter")
HASHED = ("bcrypt", "sha3-512")
DEFAULT_BCRYPT_COST = 12
BCRYPT_MAX_BYTES = 72  # bcrypt ignores the rest; refuse rather than truncate silently
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
VERSION_PATTERN = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$"
TAG_PATTERN = r"^[a-z][a-z0-9_]*_v\d+\.\d+$"
EXTRA_KEYS = ("indexes",)
OUR_KEYWORDS = ("protection", "indexed", "bcrypt_cost", "merge", "immutable")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_RESERVED = frozenset({"id", "type", "meta", "sig"})


class ModelError(ValueError):
    """A models file that cannot be used; the message names the type, property and problem."""


@dataclass(frozen=True)
class Violation:
    """One schema violation of a request body at ``path`` (a JSON Pointer, "" for the root)."""

    path: str
    message: str


class ValidationFailed(ValueError):
    """A body that does not match its type; ``violations`` lists them all, sorted by path."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = sorted(violations, key=lambda v: (v.path, v.message))
        super().__init__("; ".join(f"{v.path or '/'}: {v.message}" for v in self.violations))


def reserved_names() -> frozenset[str]:
    """Names no property may have: id, type, meta, sig; any name starting with "_" is
    reserved too (see ``is_reserved``)."""
    return _RESERVED


def is_reserved(name: str) -> bool:
    return name in _RESERVED or name.startswith("_")


# --- formats: checked by ourselves so the result does not depend on optional packages

def _string_check(pattern: str, extra: Callable[[re.Match], bool] = lambda m: True):
    regex = re.compile(pattern)

    def check(value: object) -> bool:
        if not isinstance(value, str):
            return True
        match = regex.fullmatch(value)
        return bool(match) and extra(match)
    return check


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OFFSET = r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
_TIME = rf"([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(?:\.\d+)?{_OFFSET}"


def _valid_date(y: str, m: str, d: str) -> bool:
    try:
        date(int(y), int(m), int(d))
    except ValueError:
        return False
    return True


def _valid_ip(kind: type) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, str):
            return True
        try:
            kind(value)
        except ValueError:
            return False
        return "%" not in value
    return check


def _valid_regex(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        re.compile(value)
    except re.error:
        return False
    return True


FORMATS: dict[str, Callable[[object], bool]] = {
    "email": _string_check(rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?=.{{1,253}}\Z)(?:{_LABEL}\.)*{_LABEL}"),
    "date-time": _string_check(rf"(\d{{4}})-(\d\d)-(\d\d)[Tt]{_TIME}", lambda m: _valid_date(*m.groups()[:3])),
    "date": _string_check(r"(\d{4})-(\d\d)-(\d\d)", lambda m: _valid_date(*m.groups())),
    "time": _string_check(_TIME),
    "uuid": _string_check(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"),
    "uri": _string_check(r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9._~!$&'()*+,;=:@/?#\[\]-]|%[0-9A-Fa-f]{2})*"),
    "hostname": _string_check(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}"),
    "ipv4": _valid_ip(ipaddress.IPv4Address),
    "ipv6": _valid_ip(ipaddress.IPv6Address),
    "regex": _valid_regex,
}
FORMAT_CHECKER = FormatChecker(formats=())
for _name, _check in FORMATS.items():
    FORMAT_CHECKER.checks(_name)(_check)


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
                "delete": {"enum": list(DELETE_POLICIES)},
                "description": {"type": "string"},
                "required": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "properties": {
                    "type": "object",
                    "propertyNames": {
                        "type": "string", "pattern": NAME_PATTERN, "not": {"enum": sorted(_RESERVED)},
                    },
                    "additionalProperties": {"$ref": "#/$defs/property"},
                },
                "indexes": {"type": "array"},
                "conflict": {"enum": list(CONFLICT_POLICIES)},
            },
        },
        "property": {
            "type": "object",
            "properties": {
                "protection": {"enum": list(PROTECTIONS)},
                "indexed": {"type": "boolean"},
                "bcrypt_cost": {"type": "integer", "minimum": 4, "maximum": 31},
                "merge": {"enum": list(MERGE_KINDS)},
                "immutable": {"type": "boolean"},
            },
        },
    },
}
_FILE_VALIDATOR = Draft202012Validator(MODELS_SCHEMA)
_SCHEMA_VALIDATOR = Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=FORMAT_CHECKER)


# --- the model

@dataclass(frozen=True)
class Property:
    name: str
    schema: dict
    protection: str = "plain"
    indexed: bool = False
    bcrypt_cost: int | None = None
    merge: str | None = None  # "set" | "counter": how replication conflicts merge it (conflict: merge)
    immutable: bool = False  # once set, never changed or removed

    @property
    def readable(self) -> bool:
        """False for hashed properties: their values are never returned to callers."""
        return self.protection not in HASHED


@dataclass(frozen=True)
class ModelType:
    name: str
    major: int
    minor: int
    properties: dict[str, Property]
    required: tuple[str, ...] = ()
    delete_policy: str = "hard"
    conflict_policy: str = "latest"
    extras: dict = field(default_factory=dict)
    description: str | None = None

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def tag(self) -> str:
        """The stored ``type`` tag, e.g. ``user_v1.0``."""
        return f"{self.name}_v{self.version}"

    def input_schema(self) -> dict:
        """JSON Schema of a create/replace body."""
        return {
            "$schema": SCHEMA_DIALECT,
            "title": self.tag,
            "type": "object",
            "properties": {name: copy.deepcopy(p.schema) for name, p in self.properties.items()},
            "required": list(self.required),
            "additionalProperties": False,
        }

    def output_schema(self) -> dict:
        """JSON Schema of the representation returned to callers (hashed properties absent)."""
        stamp = {"type": "string", "format": "date-time"}
        readable = {name: copy.deepcopy(p.schema) for name, p in self.properties.items() if p.readable}
        meta = {
            "type": "object",
            "properties": {
                "type": {"type": "string"}, "version": {"type": "string", "pattern": VERSION_PATTERN},
                "created_at": stamp, "updated_at": dict(stamp), "deleted_at": dict(stamp),
            },
            "required": ["type", "version", "created_at", "updated_at"],
            "additionalProperties": False,
        }
        return {
            "$schema": SCHEMA_DIALECT,
            "title": self.tag,
            "type": "object",
            "properties": {"id": {"type": "string"}, "meta": meta, **readable},
            "required": ["id", "meta", *(n for n in self.required if n in readable)],
            "additionalProperties": False,
        }

    @functools.cached_property
    def _validators(self) -> dict[str, Draft202012Validator]:
        # One compiled validator per property (twice as fast as one for the whole body);
        # required, unknown and reserved names are checked by validate() itself.
        return {name: Draft202012Validator(p.schema, format_checker=FORMAT_CHECKER)
                for name, p in self.properties.items()}

    def validate(self, body: object, kept: frozenset[str] = frozenset()) -> None:
        """Raise ValidationFailed listing every violation of ``body``. ``kept`` names
        properties present in stored form only (hashed ones a PATCH leaves alone):
        they satisfy ``required`` without being validated."""
        if not isinstance(body, dict):
            raise ValidationFailed([Violation("", "must be a JSON object")])
        validators = self._validators
        found: set[Violation] = set()
        for name, value in body.items():
            validator = validators.get(name)
            if validator is None:
                message = "reserved name" if is_reserved(name) else "unknown property"
                found.add(Violation(_pointer([name]), message))
                continue
            protection = self.properties[name].protection
            for error in validator.iter_errors(value):
                found.update(_violations(error, name, protection == "plain"))
            if protection == "bcrypt" and isinstance(value, str) and len(value.encode()) > BCRYPT_MAX_BYTES:
                found.add(Violation(_pointer([name]), f"is longer than {BCRYPT_MAX_BYTES} bytes"))
        for name in self.required:
            if name not in body and name not in kept:
                found.add(Violation(_pointer([name]), "is required"))
        if found:
            raise ValidationFailed(list(found))

    def check_value(self, name: str, value: object) -> list[Violation]:
        """The violations of one property's value (a merged set or counter, say)."""
        plain = self.properties[name].protection == "plain"
        found = {v for error in self._validators[name].iter_errors(value) for v in _violations(error, name, plain)}
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


def _violations(error: ValidationError, name: str, plain: bool) -> list[Violation]:
    path = [name, *error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [n for n in error.validator_value if n not in error.instance]
        return [Violation(_pointer([*path, n]), "is required") for n in missing]
    return [Violation(_pointer(path), error.message if plain else _redacted(error))]


def _pointer(parts: list) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


_BOUNDS = {
    "minLength": "is shorter than {} characters", "maxLength": "is longer than {} characters",
    "minimum": "is less than {}", "maximum": "is greater than {}",
    "exclusiveMinimum": "is not greater than {}", "exclusiveMaximum": "is not less than {}",
    "multipleOf": "is not a multiple of {}", "minItems": "has fewer than {} items",
    "maxItems": "has more than {} items", "minProperties": "has fewer than {} properties",
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
    if suffix == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
        except _DuplicateKey as exc:
            raise ModelError(f"{source}: invalid JSON: duplicate key {exc.args[0]!r}") from None
    else:
        try:
            data = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise ModelError(f"{source}: invalid YAML: {_yaml_problem(exc)}") from None
    return parse_models(data, source)


def parse_models(data: object, source: str = "models") -> Models:
    """Check parsed models-file data and build Models; raise ModelError listing every problem."""
    if data is None:
        raise ModelError(f"{source}: empty file: no types declared")
    errors = sorted(_FILE_VALIDATOR.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ModelError("\n".join(f"{source}: {_describe(e)}" for e in errors))
    problems: list[str] = []
    types = {name: _model_type(name, spec, problems) for name, spec in data["types"].items()}
    if problems:
        raise ModelError("\n".join(f"{source}: {p}" for p in problems))
    return Models(types)


def _model_type(name: str, spec: dict, problems: list[str]) -> ModelType:
    where = f"type {name!r}"
    major, minor = (int(n) for n in spec["version"].split("."))
    properties = {pname: _property(pname, pspec, f"{where}, property {pname!r}", problems)
                  for pname, pspec in spec["properties"].items()}
    for rname in spec.get("required", ()):
        if rname not in properties:
            problems.append(f"{where}: required names undeclared property {rname!r}")
    policy = spec.get("conflict", "latest")
    for prop in properties.values():
        if prop.merge and policy != "merge":
            problems.append(f"{where}, property {prop.name!r}: merge: {prop.merge} needs conflict: merge "
                            f"on the type (it is {policy})")
    model = ModelType(
        name=name, major=major, minor=minor, properties=properties,
        required=tuple(spec.get("required", ())), delete_policy=spec.get("delete", "hard"),
        conflict_policy=policy, extras={k: spec[k] for k in EXTRA_KEYS if k in spec},
        description=spec.get("description"),
    )
    if not re.fullmatch(TAG_PATTERN, model.tag):
        problems.append(f"{where}: tag {model.tag!r} does not match {TAG_PATTERN}")
    return model


def _property(name: str, spec: dict, where: str, problems: list[str]) -> Property:
    protection = spec.get("protection", "plain")
    cost = spec.get("bcrypt_cost")
    schema = {k: v for k, v in spec.items() if k not in OUR_KEYWORDS}
    if cost is not None and protection != "bcrypt":
        problems.append(f"{where}: bcrypt_cost is only allowed with protection bcrypt, not {protection}")
    if protection in HASHED and schema.get("type") not in ("string", ["string"]):
        problems.append(f"{where}: protection {protection!r} needs type string "
                        f"(a hashed value is compared as a string), not {schema.get('type', 'any')}")
    if spec.get("indexed") and protection in ("bcrypt", "encrypt"):
        problems.append(f"{where}: cannot be indexed with protection {protection!r} "
                        "(its stored form differs for every write)")
    merge, immutable = spec.get("merge"), bool(spec.get("immutable", False))
    declared = schema.get("type", "any")
    if merge == "set" and declared not in ("array", ["array"]):
        problems.append(f"{where}: merge: set needs type array, not {declared}")
    if merge == "counter":
        if declared not in ("integer", "number", ["integer"], ["number"]):
            problems.append(f"{where}: merge: counter needs type integer or number, not {declared}")
        if protection != "plain":
            problems.append(f"{where}: merge: counter needs protection plain, not {protection} "
                            "(its increments are kept in clear in the document metadata)")
    if merge and immutable:
        problems.append(f"{where}: merge: {merge} and immutable exclude each other (an immutable value never changes)")
    if immutable and protection == "bcrypt":
        problems.append(f"{where}: immutable cannot be combined with protection bcrypt "
                        "(a bcrypt hash cannot be compared with another one)")
    error = best_match(_SCHEMA_VALIDATOR.iter_errors(schema))
    if error is not None:
        at = _pointer(list(error.absolute_path)) or "/"
        problems.append(f"{where}: invalid JSON Schema at {at}: {error.message}")
    else:
        problems.extend(f"{where}: {p}" for p in _unsupported(schema, ""))
    return Property(
        name=name, schema=schema, protection=protection, indexed=bool(spec.get("indexed", False)),
        bcrypt_cost=(int(cost) if cost is not None else DEFAULT_BCRYPT_COST) if protection == "bcrypt" else None,
        merge=merge, immutable=immutable,
    )


_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SUBSCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")
_SUBSCHEMAS = ("items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "contains",
               "propertyNames", "not", "if", "then", "else", "contentSchema")
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
        if len(path) >= 4 and path[2] == "properties":
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
        name = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
                int: "integer", float: "number"}.get(type(value), type(value).__name__)
    return ("an " if name[0] in "aeiou" else "a ") + name


# --- file readers

class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML with JSON-like scalars (only true/false are booleans, no timestamps)
    and duplicate keys refused."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem or exc.context}{where}"
    return str(exc)
