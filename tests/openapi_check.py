"""Check real HTTP responses against the OpenAPI spec (a test helper).

    checker = SpecChecker(spec)                     # spec: an OpenAPI 3.1 dict
    checker.check("GET", "/v1/user/abc123", 200, headers, body)

``check`` raises ``AssertionError`` (naming method, path and status) unless:

* the path matches one of the spec's path templates (the query string is
  ignored; the most concrete template wins: ``/v1/user/{id}`` over
  ``/v1/{type}/{id}``) and the template has an operation for the method —
  except that a 405 for a method the path lacks is checked against the 405
  response another operation of that path documents;
* the operation documents the status (exactly, as ``4XX`` or as ``default``);
* a response documented without content has an empty body; one with content
  has a ``Content-Type`` whose media type is declared (so
  ``application/problem+json`` and ``application/json`` are told apart) and
  a body that is JSON valid against that media type's schema (JSON Schema
  draft 2020-12, ``$ref``s resolved within the whole spec);
* every header the response marks ``required: true`` is present.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

BASE_URI = "https://data-service.invalid/openapi.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class SpecChecker:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.registry = Registry().with_resource(BASE_URI, DRAFT202012.create_resource(spec))
        self._templates = [
            (template, _template_regex(template), _specificity(template)) for template in spec.get("paths", {})
        ]

    # --- lookups ---------------------------------------------------------------

    def match_path(self, path: str) -> str | None:
        """The most concrete path template matching ``path`` (query ignored)."""
        path = path.split("?", 1)[0].split("#", 1)[0]
        matches = [(rank, template) for template, regex, rank in self._templates if regex.fullmatch(path)]
        return min(matches)[1] if matches else None

    def response_for(self, method: str, path: str, status: int) -> tuple[dict[str, Any], str]:
        """The response object documented for ``method path -> status`` and its
        JSON pointer in the spec; AssertionError when there is none."""
        where = f"{method.upper()} {path} -> {status}"
        template = self.match_path(path)
        if template is None:
            raise AssertionError(f"{where}: no path in the spec matches {path!r}")
        item, item_ptr = self._deref(self.spec["paths"][template], _ptr("paths", template))
        method = method.lower()
        if method in item:
            candidates = [method]
        elif status == 405:
            candidates = [m for m in METHODS if m in item]
        else:
            raise AssertionError(
                f"{where}: {template} has no {method.upper()} operation "
                f"(only {', '.join(m.upper() for m in METHODS if m in item)})"
            )
        for name in candidates:
            responses = item[name].get("responses", {})
            for key in (str(status), f"{status // 100}XX", "default"):
                if key in responses:
                    return self._deref(responses[key], f"{item_ptr}/{name}/responses/{key}")
        raise AssertionError(
            f"{where}: status {status} is not documented for "
            f"{method.upper()} {template} (documented: "
            f"{', '.join(item[candidates[0]].get('responses', {}))})"
        )

    # --- the check -------------------------------------------------------------

    def check(self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        where = f"{method.upper()} {path} -> {status}"
        response, response_ptr = self.response_for(method, path, status)
        present = {name.lower() for name in headers}

        for name, header in response.get("headers", {}).items():
            header, _ = self._deref(header, "")
            if header.get("required") and name.lower() not in present:
                raise AssertionError(f"{where}: required response header {name!r} is missing (got {sorted(present)})")

        content = response.get("content")
        if not content:
            if body:
                raise AssertionError(f"{where}: the spec documents no body, got {body[:200]!r}")
            return

        content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), None)
        if content_type is None:
            raise AssertionError(f"{where}: no Content-Type; the spec says {sorted(content)}")
        media_type = _media_match(content_type, content)
        if media_type is None:
            raise AssertionError(f"{where}: Content-Type {content_type!r} is not one of {sorted(content)}")
        if "schema" not in content[media_type]:
            return
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise AssertionError(f"{where}: the body is not JSON ({exc}): {body[:200]!r}") from None
        schema_ptr = _ptr_join(response_ptr, "content", media_type, "schema")
        validator = Draft202012Validator(
            {"$ref": f"{BASE_URI}#{quote(schema_ptr, safe='/~')}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        error = best_match(validator.iter_errors(document))
        if error is not None:
            at = "/" + "/".join(str(part) for part in error.absolute_path)
            raise AssertionError(f"{where}: the {media_type} body does not match the spec at {at}: {error.message}")

    # --- helpers ---------------------------------------------------------------

    def _deref(self, node: Any, pointer: str) -> tuple[Any, str]:
        """Follow local ``$ref``s; returns the target and its JSON pointer."""
        seen = set()
        while isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise AssertionError(f"unsupported or circular reference {ref!r} in the spec")
            seen.add(ref)
            pointer = ref[1:]
            node = self.spec
            for part in pointer[1:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^{}/]+\})", template)
    return re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts))


def _specificity(template: str) -> tuple[int, ...]:
    """Sorts concrete before templated, segment by segment from the left."""
    return tuple(int("{" in segment) for segment in template.split("/"))


def _ptr(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _ptr_join(pointer: str, *parts: str) -> str:
    return pointer + _ptr(*parts)


def _media_match(content_type: str, declared: Mapping[str, Any]) -> str | None:
    """The declared media type (key of ``content``) that ``content_type`` is."""
    essence = content_type.split(";", 1)[0].strip().lower()
    kind = essence.split("/", 1)[0]
    for candidate in (essence, f"{kind}/*", "*/*"):
        for key in declared:
            if key.split(";", 1)[0].strip().lower() == candidate:
                return key
    return None
