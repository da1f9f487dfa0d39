"""Type-version migrations: how a document of an older major version becomes the next
one (pure but for loading the registered functions at startup).

A type's ``migrations`` in the models file map each older major version to what is
needed to upgrade its documents to the following major::

    member:
      version: "2.0"
      properties: {...}                 # version 2
      migrations:
        "1":
          properties: {...}             # version 1's declarations, as they were
          steps:
            - rename: {from: nick, to: name}
            - default: {property: level, value: 0}
            - protect: {property: email, as: encrypt}
            - move_into: {property: city, object: address, key: city}
            - move_out_of: {object: address, key: zip, property: zip}
            - drop: legacy
            - function: split_name      # entry point group data_service.migrations

The old version's ``properties`` are kept because its stored values can only be read
with its protections (a value encrypted under version 1's name and class). Steps work
on clear values; the result is validated against the next version and protected as it
declares. Majors chain (1 → 2 → 3): every major from the oldest to the current one
minus one has an entry. A value's protection only changes with a ``protect`` step, so
that no declaration change silently moves a value into clear. Hashed values (bcrypt,
sha3-512) cannot be revealed: they are carried in stored form, may be dropped, and
only bcrypt ones renamed (a sha3-512 hash binds its property name). The whole chain is
checked at startup: every old property must end up declared, with the declared
protection, and every required one must exist. A function step may add or remove
names, so after one only the protections are checked: every name it keeps keeps its
protection unless a ``protect`` step says otherwise.

A ``function`` step names a Python function registered under the entry point group
``data_service.migrations`` (never an arbitrary import path: the models file must not
be able to call any code it likes). It gets a copy of the readable clear values and
returns the new ones; hashed values stay as they are. What it returns is protected as
the next version declares: it is trusted code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Any

from jsonschema import Draft202012Validator

from ..canonical import canonical
from ..errors import ServiceError
from ..problems import Code
from ..protection.kinds import KINDS
from .formats import FORMAT_CHECKER
from .property import Property

ENTRY_POINTS = "data_service.migrations"
NAME = r"^[a-z][a-z0-9_]{0,63}$"
_PROPERTY = {"type": "string", "pattern": NAME}


class Action(StrEnum):
    RENAME = "rename"
    DEFAULT = "default"
    DROP = "drop"
    MOVE_INTO = "move_into"
    MOVE_OUT_OF = "move_out_of"
    PROTECT = "protect"
    FUNCTION = "function"


def _args(*names: str, **more: Any) -> dict:
    return {
        "type": "object",
        "required": list(names),
        "additionalProperties": False,
        "properties": {**{n: _PROPERTY for n in names}, **more},
    }


STEP_SCHEMAS: dict[str, dict] = {
    Action.RENAME: _args("from", "to"),
    Action.DEFAULT: {**_args("property", "value"), "properties": {"property": _PROPERTY, "value": {}}},
    Action.DROP: _PROPERTY,
    Action.MOVE_INTO: _args("property", "object", "key"),
    Action.MOVE_OUT_OF: _args("object", "key", "property"),
    Action.PROTECT: {**_args("property", "as"), "properties": {"property": _PROPERTY, "as": {"enum": list(KINDS)}}},
    Action.FUNCTION: {"type": "string", "minLength": 1},
}


def schema(property_schema: dict) -> dict:
    """The ``migrations`` keyword's part of the models file's schema."""
    step = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": {"enum": list(STEP_SCHEMAS)},
        "properties": STEP_SCHEMAS,
    }
    return {
        "type": "object",
        "propertyNames": {"type": "string", "pattern": r"^(0|[1-9][0-9]*)$"},
        "additionalProperties": {
            "type": "object",
            "required": ["properties", "steps"],
            "additionalProperties": False,
            "properties": {
                "properties": {"type": "object", "additionalProperties": property_schema},
                "steps": {"type": "array", "items": step},
            },
        },
    }


class MigrationFailed(ServiceError):
    """A stored document of an older version that its migration cannot upgrade (a
    function failed, or the result does not match the new version). Never the values."""

    code = Code.MIGRATION_FAILED

    def __init__(self, docid: str, reason: str) -> None:
        super().__init__(f"{docid}: {reason}")
        self.docid, self.reason = docid, reason

    @property
    def detail(self) -> str:
        return f"document {self.docid} of an older version cannot be upgraded: {self.reason}"


@dataclass(frozen=True)
class Hidden:
    """A hashed value in stored form: carried through the steps, never revealed."""

    stored: Any


@dataclass(frozen=True)
class Step:
    action: Action
    args: Any
    function: Callable[[dict], dict] | None = None

    @property
    def label(self) -> str:
        return f"{self.action} {self.args!r}" if self.action is not Action.FUNCTION else f"function {self.args!r}"


@dataclass(frozen=True)
class Migration:
    """Documents of major ``source`` become major ``source + 1``."""

    source: int
    properties: dict[str, Property]  # version ``source``'s declarations
    steps: tuple[Step, ...] = ()


@dataclass
class Values:
    """What the steps work on: clear values (``Hidden`` for hashed ones) and, per name,
    the name it had in the stored document (None: made by the migration)."""

    values: dict[str, Any]
    origin: dict[str, str | None] = field(default_factory=dict)

    def apply(self, migration: Migration, docid: str) -> None:
        for step in migration.steps:
            try:
                self._apply(step, docid)
            except MigrationFailed:
                raise
            except Exception as exc:  # a function's own error: its type only (values may be in the message)
                raise MigrationFailed(docid, f"{step.label} raised {type(exc).__name__}") from None

    def _apply(self, step: Step, docid: str) -> None:
        values, origin, args = self.values, self.origin, step.args
        if step.action is Action.RENAME and args["from"] in values:
            values[args["to"]] = values.pop(args["from"])
            origin[args["to"]] = origin.pop(args["from"], None)
        elif step.action is Action.DEFAULT and args["property"] not in values:
            values[args["property"]] = copy.deepcopy(args["value"])
            origin[args["property"]] = None
        elif step.action is Action.DROP:
            values.pop(args, None)
            origin.pop(args, None)
        elif step.action is Action.MOVE_INTO and args["property"] in values:
            target = values.get(args["object"], {})
            if not isinstance(target, dict):
                raise ValueError("not an object")
            values[args["object"]] = {**target, args["key"]: values.pop(args["property"])}
            origin.setdefault(args["object"], None)
            origin.pop(args["property"], None)
        elif step.action is Action.MOVE_OUT_OF and isinstance(values.get(args["object"]), dict):
            source = values[args["object"]]
            if args["key"] in source:
                values[args["property"]] = source[args["key"]]
                values[args["object"]] = {k: v for k, v in source.items() if k != args["key"]}
                origin[args["property"]] = None
        elif step.action is Action.FUNCTION:
            assert step.function is not None
            hidden = {k: v for k, v in values.items() if isinstance(v, Hidden)}
            clear = step.function(copy.deepcopy({k: v for k, v in values.items() if k not in hidden}))
            if not isinstance(clear, dict) or not all(isinstance(k, str) for k in clear):
                raise ValueError("a function must return an object")
            if set(clear) & set(hidden):
                raise MigrationFailed(
                    docid, f"{step.label} returned hashed properties {sorted(set(clear) & set(hidden))}"
                )
            canonical(clear)  # NotCanonical for values JSON cannot hold
            self.values = {**hidden, **clear}
            self.origin = {k: origin.get(k) for k in self.values}


def registered() -> dict[str, Any]:
    """The entry points of ``ENTRY_POINTS`` by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}


def parse(
    type_name: str,
    spec: dict,
    target: dict[str, Property],
    required: tuple[str, ...],
    major: int,
    make_property: Callable[[str, dict, str], Property],
    problems: list[str],
) -> dict[int, Migration]:
    """The ``migrations`` of a type declared at ``major`` with ``target`` properties;
    problems name the type, the version and the step."""
    declared = spec.get("migrations") or {}
    sources = sorted(int(m) for m in declared)
    where = f"type {type_name!r}"
    if sources and sources != list(range(sources[0], major)):
        missing = sorted(set(range(sources[0], major)) - set(sources))
        problems.append(
            f"{where}: migrations must chain up to version {major}: "
            + (f"no steps from version {missing[0]}" if missing else f"version {sources[-1]} is not older than {major}")
        )
        return {}
    functions = registered() if any(Action.FUNCTION in s for m in declared.values() for s in m["steps"]) else {}
    result: dict[int, Migration] = {}
    for source in sources:
        entry, here = declared[str(source)], f"{where}, migration from version {source}"
        properties = {
            name: make_property(name, pspec, f"{here}, property {name!r}")
            for name, pspec in entry["properties"].items()
        }
        steps = tuple(_step(raw, functions, f"{here}, step {n}", problems) for n, raw in enumerate(entry["steps"], 1))
        result[source] = Migration(source, properties, steps)
    for source in sources:  # each against the declarations of the version it leads to
        following = result[source + 1].properties if source + 1 in result else target
        rules = required if source + 1 == major else ()
        problems.extend(_check(result[source], following, rules, f"{where}, migration from version {source}"))
    return result


def _step(raw: dict, functions: dict, where: str, problems: list[str]) -> Step:
    ((action, args),) = raw.items()
    if action != Action.FUNCTION:
        return Step(Action(action), args)
    point = functions.get(args)
    if point is None:
        problems.append(f"{where}: no function {args!r} is registered in the entry point group {ENTRY_POINTS}")
        return Step(Action.FUNCTION, args, lambda values: values)
    try:
        function = point.load()
    except Exception as exc:  # an operator's broken package: say which entry point, and why
        problems.append(f"{where}: function {args!r} ({point.value}) cannot be loaded: {type(exc).__name__}: {exc}")
        return Step(Action.FUNCTION, args, lambda values: values)
    if not callable(function):
        problems.append(f"{where}: function {args!r} ({point.value}) is not callable")
    return Step(Action.FUNCTION, args, function)


def _check(migration: Migration, target: dict[str, Property], required: tuple[str, ...], where: str) -> list[str]:
    """Follow the steps on the old version's protections (by name) and compare the
    outcome with ``target``. A function step may change values, never protections: a name
    it keeps keeps its protection. Which names exist after one is unknown (it may add or
    remove any), so from there on only a protection that differs is a problem."""
    kinds = {name: prop.kind for name, prop in migration.properties.items()}
    problems: list[str] = []
    opened = False  # a function step ran

    def wrong(n: int, step: Step, problem: str) -> None:
        problems.append(f"{where}, step {n} ({step.action}): {problem}")

    def absent(n: int, step: Step, name: str) -> bool:
        """Whether ``name`` is not known here; a problem unless a function step may have made it."""
        if name in kinds:
            return False
        if not opened:
            wrong(n, step, f"there is no property {name!r} at this point")
        return True

    def taken(name: str) -> bool:
        """Whether ``name`` is certainly there already (a function step may have removed it)."""
        return name in kinds and not opened

    for n, step in enumerate(migration.steps, 1):
        args = step.args
        if step.action is Action.FUNCTION:
            opened = True
        elif step.action is Action.RENAME:
            old, new = args["from"], args["to"]
            if absent(n, step, old):
                pass
            elif taken(new):
                wrong(n, step, f"{new!r} exists already")
            elif kinds[old].name == "sha3-512":
                wrong(n, step, f"{old!r} is a sha3-512 hash, which binds its property name: it cannot be renamed")
            else:
                kinds[new] = kinds.pop(old)
        elif step.action is Action.DEFAULT:
            name = args["property"]
            if name not in target:
                wrong(n, step, f"{name!r} is not declared in the version it leads to")
            else:
                problems.extend(f"{where}, step {n} (default): {m}" for m in _invalid(target[name], args["value"]))
                kinds.setdefault(name, target[name].kind)
        elif step.action is Action.DROP:
            if not absent(n, step, args):
                del kinds[args]
        elif step.action is Action.PROTECT:
            name, kind = args["property"], KINDS[args["as"]]
            if kind.slow:
                wrong(n, step, "bcrypt is too slow to run while reading a document; hash it in the application")
            elif absent(n, step, name):
                pass
            elif not kinds[name].readable and kinds[name] is not kind:
                wrong(n, step, f"{name!r} is a {kinds[name].name} hash: it cannot be revealed to protect it anew")
            else:
                kinds[name] = kind
        else:
            moving = args["property"] if step.action is Action.MOVE_INTO else args["object"]
            if absent(n, step, moving):
                pass
            elif not kinds[moving].readable:
                wrong(n, step, f"{moving!r} is a {kinds[moving].name} hash: it cannot be moved")
            elif step.action is Action.MOVE_INTO:
                holder = args["object"]
                held = kinds.get(holder) or (target[holder].kind if holder in target else None)
                if held is None:
                    wrong(n, step, f"{holder!r} is not declared in the version it leads to")
                elif held is not kinds[moving]:
                    wrong(
                        n, step, f"{moving!r} is {kinds[moving].name} but {holder!r} is {held.name}: protect it first"
                    )
                else:
                    kinds[holder] = kinds.pop(moving)
            elif taken(args["property"]):
                wrong(n, step, f"{args['property']!r} exists already")
            else:
                kinds[args["property"]] = kinds[moving]
    for name, kind in sorted(kinds.items()):
        if name in target and target[name].kind is not kind:
            problems.append(
                f"{where}: property {name!r} is {kind.name} but becomes {target[name].kind.name}: "
                f"say so with a step {{protect: {{property: {name}, as: {target[name].kind.name}}}}}"
            )
        elif name not in target and not opened:
            problems.append(
                f"{where}: property {name!r} has no place in the version it leads to: drop, rename or move it"
            )
    for name in required if not opened else ():
        if name not in kinds:
            problems.append(f"{where}: property {name!r} is required but older documents lack it: add a default")
    return problems


def _invalid(prop: Property, value: Any) -> list[str]:
    """Why a default value does not match the property's schema."""
    validator = Draft202012Validator(prop.schema, format_checker=FORMAT_CHECKER)
    return [f"the value for {prop.name!r}: {error.message}" for error in validator.iter_errors(value)]


def same(a: Any, b: Any) -> bool:
    """Whether two clear values are equal as JSON."""
    return not isinstance(a, Hidden) and not isinstance(b, Hidden) and canonical(a) == canonical(b)
