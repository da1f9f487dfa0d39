"""The OpenAPI 3.1 description of the HTTP API, and its per-type specialisation.

The canonical file is ``api_spec/openapi.yaml`` at the repository root;
``data_service/openapi.yaml`` is a relative symlink to it so that the same
path works from a source checkout and from an installed wheel (package data).

``spec_for(models)`` is what ``GET /openapi.json`` serves: the generic spec
plus, for each declared type ``t``, the schemas ``t`` / ``t_input`` and the
concrete paths ``/v1/t`` and ``/v1/t/{id}`` that use them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import yaml

from . import __version__

SPEC_FILE = Path(__file__).with_name("openapi.yaml")

_SCHEMAS = "#/components/schemas/"
_GENERIC_PATHS = {
    "/v1/{type}": "/v1/{name}",
    "/v1/{type}/{id}": "/v1/{name}/{{id}}",
    "/v1/{type}/_changes": "/v1/{name}/_changes",
    "/v1/{type}/_bulk": "/v1/{name}/_bulk",
    "/v1/{type}/{id}/verify": "/v1/{name}/{{id}}/verify",
}
_TYPE_PARAMETER = "#/components/parameters/TypeName"


class DeclaredType(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def input_schema(self) -> dict[str, Any]: ...

    def output_schema(self) -> dict[str, Any]: ...


def load_spec() -> dict[str, Any]:
    """The generic spec as a fresh dict (read from disk on every call)."""
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


def spec_for(models: Iterable[DeclaredType], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of ``spec`` (default: ``load_spec()``) specialised to ``models``."""
    spec = copy.deepcopy(spec if spec is not None else load_spec())
    spec["info"]["version"] = __version__
    schemas = spec["components"]["schemas"]
    for model in models:
        name = model.name
        for key, schema in ((name, model.output_schema()), (f"{name}_input", model.input_schema())):
            # the title is what generators name the class after: the models file titles
            # both schemas of a type alike (``user_v1.0``), which would collide
            schemas[key] = {**_rebased(copy.deepcopy(schema), _SCHEMAS + key), "title": key}
        refs = {_SCHEMAS + "Document": _SCHEMAS + name, _SCHEMAS + "DocumentInput": f"{_SCHEMAS}{name}_input"}
        for generic, concrete in _GENERIC_PATHS.items():
            item = _with_refs(copy.deepcopy(spec["paths"][generic]), refs)
            item["parameters"] = [p for p in item.get("parameters", []) if p.get("$ref") != _TYPE_PARAMETER]
            if not item["parameters"]:
                del item["parameters"]
            item["summary"] = f"Documents of type `{name}` (version {model.version})"
            for operation in _operations(item):
                operation["operationId"] = f"{operation['operationId']}_{name}"
                operation["tags"] = [name]
            spec["paths"][concrete.format(name=name)] = item
    return spec


_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _operations(path_item: dict[str, Any]) -> list[dict[str, Any]]:
    return [path_item[m] for m in _METHODS if m in path_item]


def _with_refs(node: Any, refs: dict[str, str]) -> Any:
    """``node`` with every ``$ref`` found in ``refs`` replaced (in place)."""
    if isinstance(node, dict):
        if node.get("$ref") in refs:
            node["$ref"] = refs[node["$ref"]]
        for value in node.values():
            _with_refs(value, refs)
    elif isinstance(node, list):
        for value in node:
            _with_refs(value, refs)
    return node


def _rebased(schema: dict[str, Any], location: str) -> dict[str, Any]:
    """``schema`` moved to ``location`` in the spec: its document-local ``$ref``s
    (``#``, ``#/$defs/...``) must now point below that location. A schema with
    its own ``$id`` is its own base and is left alone."""
    if "$id" in schema:
        return schema

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
                node["$ref"] = location + ref[1:]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema
