"""The OpenAPI 3.1 description of the HTTP API, and its per-type specialisation.

The canonical file is ``api_spec/openapi.yaml`` at the repository root;
``data_service/openapi.yaml`` is a relative symlink to it so that the same
path works from a source checkout and from an installed wheel (package data).

``spec_for(models)`` is what ``GET /openapi.json`` serves: the generic spec
plus, for each declared type ``t``, its schemas (``t``, ``t_input``, ``t_replacement``,
``t_patch``, ``t_verify``) and the concrete paths ``/v1/t`` and ``/v1/t/{id}`` that use them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import yaml

from . import __version__, query
from .envelope import ID_PATTERN
from .models import ModelType

SPEC_FILE = Path(__file__).with_name("openapi.yaml")

_SCHEMAS = "#/components/schemas/"
_GENERIC_PATHS = {
    "/v1/{type}": "/v1/{name}",
    "/v1/{type}/{id}": "/v1/{name}/{{id}}",
    "/v1/{type}/_changes": "/v1/{name}/_changes",
    "/v1/{type}/_bulk": "/v1/{name}/_bulk",
    "/v1/{type}/{id}/verify": "/v1/{name}/{{id}}/verify",
}
_RESPONSES = "#/components/responses/"
_STALE, _STALE_RESPONSE = "StaleRevisionProblem", "StaleRevision"
_TYPE_PARAMETER = "#/components/parameters/TypeName"
_VERIFY = "/v1/{type}/{id}/verify"


class DeclaredType(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def input_schema(self) -> dict[str, Any]: ...

    def replacement_schema(self) -> dict[str, Any]: ...

    def output_schema(self) -> dict[str, Any]: ...

    def patch_schema(self) -> dict[str, Any]: ...

    def verify_schema(self) -> dict[str, Any] | None: ...


def load_spec() -> dict[str, Any]:
    """The generic spec as a fresh dict (read from disk on every call)."""
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


def spec_for(models: Iterable[DeclaredType], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of ``spec`` (default: ``load_spec()``) specialised to ``models``: per type
    its schemas (read, create/replace, merge patch, verify candidates) and concrete paths
    with links between them; the generic paths then describe the undeclared names only."""
    spec = copy.deepcopy(spec if spec is not None else load_spec())
    spec["info"]["version"] = __version__
    schemas = spec["components"]["schemas"]
    schemas["DocumentId"]["pattern"] = ID_PATTERN.pattern  # the server's own check (``envelope.valid_id``)
    models = list(models)
    if models:  # a declared name never reaches a generic path: its concrete one is more specific
        spec["components"]["parameters"]["TypeName"]["schema"]["not"] = {"enum": [m.name for m in models]}
    for model in models:
        name = model.name
        verify = model.verify_schema()
        typed = {
            name: model.output_schema(),
            f"{name}_input": model.input_schema(),
            f"{name}_replacement": model.replacement_schema(),
            f"{name}_patch": model.patch_schema(),
            **({f"{name}_verify": verify} if verify is not None else {}),
        }
        for key, schema in typed.items():
            # the title is what generators name the class after: the models file titles
            # both schemas of a type alike (``user_v1.0``), which would collide
            schemas[key] = {**_rebased(copy.deepcopy(schema), _SCHEMAS + key), "title": key}
            _widen_numbers(schemas[key])  # the static spec states its own formats
        refs = {
            _SCHEMAS + "Document": _SCHEMAS + name,
            _SCHEMAS + "DocumentInput": f"{_SCHEMAS}{name}_input",
            _SCHEMAS + "DocumentReplacement": f"{_SCHEMAS}{name}_replacement",
            _SCHEMAS + "MergePatch": f"{_SCHEMAS}{name}_patch",
            _SCHEMAS + "VerifyCandidates": f"{_SCHEMAS}{name}_verify",
            _SCHEMAS + _STALE: f"{_SCHEMAS}{name}_stale_revision",
            _RESPONSES + _STALE_RESPONSE: f"{_RESPONSES}{name}_stale_revision",
        }
        _typed_stale_revision(spec, name, refs)
        for generic, concrete in _GENERIC_PATHS.items():
            if generic == _VERIFY and verify is None:
                continue  # nothing to verify: every body would be a 422
            item = _with_refs(copy.deepcopy(spec["paths"][generic]), refs)
            item["parameters"] = [p for p in item.get("parameters", []) if p.get("$ref") != _TYPE_PARAMETER]
            if not item["parameters"]:
                del item["parameters"]
            item["summary"] = f"Documents of type `{name}` (version {model.version})"
            for operation in _operations(item):
                operation["operationId"] = f"{operation['operationId']}_{name}"
                operation["tags"] = [name]
            spec["paths"][concrete.format(name=name)] = item
        _narrow_sort(spec["paths"][f"/v1/{name}"]["get"], model)
        _link(spec["paths"], name, verify is not None)
    return spec


def _typed_stale_revision(spec: dict[str, Any], name: str, refs: dict[str, str]) -> None:
    """The 412 of type ``name``'s operations, whose ``current`` is that type (the generic
    one's is ``Document``): a copy of the schema and the response with the refs replaced."""
    components = spec["components"]
    key = f"{name}_stale_revision"
    components["schemas"][key] = {**_with_refs(copy.deepcopy(components["schemas"][_STALE]), refs), "title": key}
    components["responses"][key] = _with_refs(copy.deepcopy(components["responses"][_STALE_RESPONSE]), refs)


# Generators pick int32 and float32 for a bare integer or number; the server takes every
# value up to ±(2^53−1) (``models.limits``), which needs 64 bits. A model's own ``format``
# (``int32``, say) is kept.
_WIDTHS = {"integer": "int64", "number": "double"}
_VALUES = frozenset({"example", "examples", "default", "const", "enum"})  # instances, not schemas


def _widen_numbers(node: Any) -> None:
    """Every integer or number schema in ``node`` without a ``format`` gets a 64-bit one."""
    if isinstance(node, dict):
        declared = node.get("type")
        kinds = declared if isinstance(declared, list) else [declared]
        width = next((_WIDTHS[kind] for kind in kinds if isinstance(kind, str) and kind in _WIDTHS), None)
        if width is not None and "format" not in node:
            node["format"] = width
        for key, value in node.items():
            if key not in _VALUES:
                _widen_numbers(value)
    elif isinstance(node, list):
        for value in node:
            _widen_numbers(value)


def _narrow_sort(operation: dict[str, Any], model: DeclaredType) -> None:
    """The type's own ``sort`` values (those a query without filters accepts)."""
    if not isinstance(model, ModelType):
        return
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "sort":
            parameter["schema"] = {"type": "string", "enum": query.sorts(model)}
            parameter["description"] = (
                "Without filters, one of these; with filters, the field after the equality fields of an index."
            )


def _link(paths: dict[str, Any], name: str, verifiable: bool) -> None:
    """OpenAPI links: what a created, read or written document leads to (its id, its ETag)."""
    collection, single = paths[f"/v1/{name}"], paths[f"/v1/{name}/{{id}}"]
    by_id = {"id": "$response.body#/id"}
    by_etag = {**by_id, "If-Match": "$response.header.ETag"}
    targets = {
        "GetDocument": ("getDocument", by_id),
        "ReplaceDocument": ("replaceDocument", by_etag),
        "PatchDocument": ("patchDocument", by_etag),
        "DeleteDocument": ("deleteDocument", by_etag),
        **({"VerifySecrets": ("verifySecrets", by_id)} if verifiable else {}),
    }
    links = {
        link: {"operationId": f"{operation}_{name}", "parameters": dict(parameters)}
        for link, (operation, parameters) in targets.items()
    }
    for response in (
        collection["post"]["responses"]["201"],
        single["get"]["responses"]["200"],
        single["put"]["responses"]["200"],
        single["patch"]["responses"]["200"],
    ):
        response["links"] = copy.deepcopy(links)


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
