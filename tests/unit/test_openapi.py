"""The OpenAPI spec, its per-type specialisation, and the response checker."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from openapi_check import SpecChecker
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from support import ROOT

from data_service import __version__, problems
from data_service.openapi import SPEC_FILE, load_spec, spec_for

# The error contract: code -> (status, retryable).
CONTRACT = {
    "bad_request": (400, False),
    "invalid_json": (400, False),
    "invalid_id": (400, False),
    "invalid_query": (400, False),
    "not_found": (404, False),
    "unknown_type": (404, False),
    "method_not_allowed": (405, False),
    "not_acceptable": (406, False),
    "stale_revision": (412, True),
    "payload_too_large": (413, False),
    "unsupported_media_type": (415, False),
    "validation_failed": (422, False),
    "reserved_property": (422, False),
    "number_out_of_range": (422, False),
    "nested_too_deep": (422, False),
    "idempotency_key_mismatch": (422, False),
    "idempotency_key_consumed": (409, False),
    "precondition_required": (428, False),
    "internal_error": (500, False),
    "integrity_violation": (500, False),
    "migration_failed": (500, False),
    "not_installed": (503, True),
    "couchdb_refused": (502, False),
    "couchdb_error": (502, False),
    "couchdb_unavailable": (503, True),
    "database_missing": (503, True),
    "conflict_retries_exhausted": (503, True),
    "busy": (503, True),
    "draining": (503, True),
    "worker_stalled": (503, True),
    "key_unavailable": (503, True),
    "unauthorized": (401, False),
    "host_not_allowed": (421, False),
}


@dataclass
class FakeType:
    name: str
    version: str
    input: dict[str, Any]
    output: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] | None = None

    def input_schema(self) -> dict[str, Any]:
        return copy.deepcopy(self.input)

    def replacement_schema(self) -> dict[str, Any]:
        return {**self.input_schema(), "required": []}

    def output_schema(self) -> dict[str, Any]:
        return copy.deepcopy(self.output)

    def patch_schema(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self.input.items() if k != "required"}

    def verify_schema(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.verify)


META = {"type": "object", "required": ["type", "version", "created_at", "updated_at"]}

USER = FakeType(
    "user",
    "1.0",
    input={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
    },
    output={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["id", "meta", "name"],
        "additionalProperties": False,
        "properties": {"id": {"type": "string"}, "meta": META, "name": {"type": "string"}, "email": {"type": "string"}},
    },
    verify={"type": "object", "properties": {"email": {"type": "string"}}, "minProperties": 1},
)
# Uses document-local $refs, which spec_for must re-point below components/schemas/note.
NOTE = FakeType(
    "note",
    "2.1",
    input={
        "type": "object",
        "required": ["text"],
        "$defs": {"text": {"type": "string", "maxLength": 10}},
        "properties": {"text": {"$ref": "#/$defs/text"}},
    },
    output={
        "type": "object",
        "required": ["id", "meta", "text"],
        "$defs": {"text": {"type": "string"}},
        "properties": {"id": {"type": "string"}, "meta": META, "text": {"$ref": "#/$defs/text"}},
    },
)

ETAG = '"1-967a00dff5e02add41819138abb3284d"'
NOW = "2025-11-26T15:00:00Z"
JSON = "application/json"
PROBLEM = "application/problem+json"


def user_doc(**extra: Any) -> dict[str, Any]:
    return {
        "id": "abc123",
        "meta": {"type": "user", "version": "1.0", "created_at": NOW, "updated_at": NOW},
        "name": "Ada",
        **extra,
    }


def problem(code: str, **extra: Any) -> dict[str, Any]:
    status, retryable = CONTRACT[code]
    return {
        "type": f"urn:data-service:problem:{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "retryable": retryable,
        **extra,
    }


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return spec_for([USER, NOTE])


@pytest.fixture(scope="module")
def checker(spec) -> SpecChecker:
    return SpecChecker(spec)


# --- the spec file ---------------------------------------------------------------


def test_spec_file_is_valid_openapi_3_1():
    spec = load_spec()
    assert spec["openapi"] == "3.1.0"
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_package_reads_the_canonical_file_through_a_relative_symlink():
    assert Path(__import__("data_service").__file__).with_name("openapi.yaml") == SPEC_FILE
    assert SPEC_FILE.is_symlink()
    assert os.readlink(SPEC_FILE) == "../api_spec/openapi.yaml"
    assert SPEC_FILE.resolve() == (ROOT / "api_spec" / "openapi.yaml").resolve()


def test_spec_documents_every_path_and_method():
    paths = {path: sorted(m for m in item if m != "parameters") for path, item in load_spec()["paths"].items()}
    assert paths == {
        "/_health": ["get"],
        "/_metrics": ["get"],
        "/_metrics/database": ["get"],
        "/openapi.json": ["get"],
        "/_docs": ["get"],
        "/v1/_types": ["get"],
        "/v1/{type}": ["get", "post"],
        "/v1/{type}/{id}": ["delete", "get", "head", "patch", "put"],
        "/v1/{type}/{id}/verify": ["post"],
        "/v1/{type}/_changes": ["get"],
        "/v1/{type}/_bulk": ["post"],
    }


def test_problem_codes_match_the_contract_and_the_server_table():
    enum = load_spec()["components"]["schemas"]["ProblemCode"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == set(CONTRACT)
    for code, kind in problems.TABLE.items():
        assert code in CONTRACT, f"problems.TABLE has {code!r}, which the spec does not document"
        assert (kind.status, kind.retryable) == CONTRACT[code], code


# --- spec_for --------------------------------------------------------------------


def test_spec_for_adds_type_schemas_and_concrete_paths():
    generic = load_spec()
    out = spec_for([USER, NOTE], generic)
    assert generic == load_spec(), "spec_for must not modify its input"
    assert out["info"]["version"] == __version__

    schemas = out["components"]["schemas"]
    assert schemas["user"] == {**USER.output, "title": "user"}
    assert schemas["user_input"] == {**USER.input, "title": "user_input"}
    assert schemas["user_replacement"] == {**USER.input, "required": [], "title": "user_replacement"}
    assert schemas["note"]["properties"]["text"] == {"$ref": "#/components/schemas/note/$defs/text"}
    assert schemas["note_input"]["properties"]["text"] == {"$ref": "#/components/schemas/note_input/$defs/text"}
    assert {"Document", "DocumentInput"} <= set(schemas)

    paths = out["paths"]
    assert {"/v1/{type}", "/v1/{type}/{id}", "/v1/user", "/v1/user/{id}", "/v1/note", "/v1/note/{id}"} <= set(paths)
    assert {"/v1/{type}/_changes", "/v1/user/_changes", "/v1/note/_changes"} <= set(paths)
    assert paths["/v1/user/{id}/verify"]["post"]["operationId"] == "verifySecrets_user"
    for name in ("user", "note"):
        collection, single = paths[f"/v1/{name}"], paths[f"/v1/{name}/{{id}}"]
        assert "parameters" not in collection
        assert single["parameters"] == [{"$ref": "#/components/parameters/DocumentId"}]
        post = collection["post"]
        assert post["requestBody"]["content"][JSON]["schema"] == {"$ref": f"#/components/schemas/{name}_input"}
        assert post["responses"]["201"]["content"][JSON]["schema"] == {"$ref": f"#/components/schemas/{name}"}
        replacement = {"$ref": f"#/components/schemas/{name}_replacement"}
        assert single["put"]["requestBody"]["content"][JSON]["schema"] == replacement
        for method in ("get", "put", "patch"):
            assert single[method]["responses"]["200"]["content"][JSON]["schema"] == {
                "$ref": f"#/components/schemas/{name}"
            }
        assert sorted(m for m in single if m != "parameters" and m != "summary") == [
            "delete",
            "get",
            "head",
            "patch",
            "put",
        ]
        stale = {"$ref": f"#/components/responses/{name}_stale_revision"}
        assert single["put"]["responses"]["412"] == single["patch"]["responses"]["412"] == stale
        current = schemas[f"{name}_stale_revision"]["allOf"][1]["properties"]["current"]
        assert current == {"$ref": f"#/components/schemas/{name}"}  # the type itself, not Document

    operation_ids = [
        op["operationId"]
        for item in paths.values()
        for key, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    ]
    assert len(operation_ids) == len(set(operation_ids))
    assert "getDocument_user" in operation_ids and "getDocument" in operation_ids

    validate(out, cls=OpenAPIV31SpecValidator)


def test_spec_for_without_types_is_the_generic_spec():
    out = spec_for([])
    expected = load_spec()
    expected["info"]["version"] = __version__
    assert out == expected


# --- SpecChecker: conforming responses ----------------------------------------------

CREATED = {"Location": "/v1/user/abc123", "ETag": ETAG, "Content-Type": JSON}

BUILD = {"version": __version__, "models_digest": None, "keys": {"signing": {"primary": 7, "enabled": [3, 7]}}}

CONFORMING = [
    ("GET", "/_health", 200, {"Content-Type": JSON}, {"status": "ok", "build": BUILD, "worker": 0}),
    (
        "GET",
        "/_health?quick=false",
        200,
        {"Content-Type": "application/json; charset=UTF-8"},
        {
            "status": "ok",
            "build": BUILD,
            "worker": 0,
            "couchdb": {"kind": "couchdb", "version": None},
            "database": {"name": "d", "doc_count": 0},
        },
    ),
    (
        "GET",
        "/v1/_types",
        200,
        {"Content-Type": JSON},
        {
            "types": [
                {
                    "name": "user",
                    "version": "1.0",
                    "delete": "soft",
                    "schema": USER.input,
                    "properties": {"name": {"protection": "plain", "indexed": True}},
                }
            ]
        },
    ),
    ("POST", "/v1/user", 201, CREATED, user_doc()),
    ("POST", "/v1/user", 200, CREATED, user_doc()),
    ("GET", "/v1/user/abc123", 200, {"ETag": ETAG, "Content-Type": JSON}, user_doc(email="a@b.c")),
    ("GET", "/v1/user/abc123", 304, {"ETag": ETAG}, None),
    ("PUT", "/v1/user/abc123", 200, {"ETag": ETAG, "Content-Type": JSON}, user_doc()),
    ("PATCH", "/v1/user/abc123", 200, {"etag": ETAG, "content-type": JSON}, user_doc()),
    ("DELETE", "/v1/user/abc123", 204, {}, None),
    (
        "GET",
        "/v1/note/n1",
        200,
        {"ETag": ETAG, "Content-Type": JSON},
        {
            "id": "n1",
            "meta": {"type": "note", "version": "2.1", "created_at": NOW, "updated_at": NOW},
            "text": "a long text, the output schema allows it",
        },
    ),
    (
        "GET",
        "/v1/undeclared/abc123",
        200,
        {"ETag": ETAG, "Content-Type": JSON},
        {
            "id": "abc123",
            "meta": {"type": "undeclared", "version": "1.0", "created_at": NOW, "updated_at": NOW, "deleted_at": NOW},
        },
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "status", "headers", "document"), CONFORMING, ids=[f"{c[0]} {c[1]} {c[2]}" for c in CONFORMING]
)
def test_checker_accepts_conforming_responses(checker, method, path, status, headers, document):
    checker.check(method, path, status, headers, b"" if document is None else body(document))


def test_checker_accepts_the_served_spec_itself(checker, spec):
    checker.check("GET", "/openapi.json", 200, {"Content-Type": JSON}, body(spec))


# Where each problem code can be answered, with what it must carry.
PROBLEM_CASES = [
    ("POST", "/v1/user", "bad_request", {}, {}),
    ("PUT", "/v1/user/abc123", "invalid_json", {}, {}),
    ("GET", "/v1/user/-x", "invalid_id", {}, {"detail": "bad id", "instance": "/v1/user/-x"}),
    ("GET", "/v1/user/abc123", "invalid_query", {}, {}),
    ("GET", "/v1/user/abc123", "not_found", {}, {}),
    ("POST", "/v1/nope", "unknown_type", {}, {}),
    ("DELETE", "/_health", "method_not_allowed", {"Allow": "GET"}, {}),
    ("POST", "/v1/user/abc123", "method_not_allowed", {"Allow": "GET, PUT, PATCH, DELETE"}, {}),
    ("GET", "/v1/_types", "not_acceptable", {}, {}),
    ("PUT", "/v1/user/abc123", "stale_revision", {"ETag": ETAG}, {"current": user_doc()}),
    ("DELETE", "/v1/user/abc123", "stale_revision", {"ETag": ETAG}, {"current": user_doc()}),
    ("POST", "/v1/user", "payload_too_large", {}, {}),
    ("PATCH", "/v1/user/abc123", "unsupported_media_type", {}, {}),
    ("PUT", "/v1/user/abc123", "validation_failed", {}, {"errors": [{"path": "/name", "message": "required"}]}),
    ("POST", "/v1/user", "reserved_property", {}, {"errors": [{"path": "/meta", "message": "reserved"}]}),
    ("POST", "/v1/user", "number_out_of_range", {}, {"errors": [{"path": "/age", "message": "beyond"}]}),
    ("PATCH", "/v1/user/abc123", "nested_too_deep", {}, {"errors": [{"path": "/address", "message": "deep"}]}),
    ("POST", "/v1/user", "idempotency_key_mismatch", {}, {}),
    ("POST", "/v1/user", "idempotency_key_consumed", {}, {}),
    ("DELETE", "/v1/user/abc123", "precondition_required", {}, {}),
    ("GET", "/openapi.json", "internal_error", {}, {}),
    ("GET", "/v1/user/abc123", "integrity_violation", {}, {}),
    ("GET", "/v1/user/abc123", "migration_failed", {}, {}),
    ("PATCH", "/v1/user/abc123", "migration_failed", {}, {}),
    ("PATCH", "/v1/user/abc123", "key_unavailable", {"Retry-After": "1"}, {}),
    ("GET", "/v1/user/abc123", "key_unavailable", {"Retry-After": "1"}, {}),
    ("POST", "/v1/user", "key_unavailable", {"Retry-After": "1"}, {}),
    ("GET", "/_health?quick=false", "not_installed", {"Retry-After": "1"}, {"missing_design_docs": ["ds_user_v1"]}),
    ("GET", "/_health?quick=false", "couchdb_refused", {}, {}),
    ("DELETE", "/v1/user/abc123", "couchdb_error", {}, {}),
    ("GET", "/_health?quick=false", "couchdb_unavailable", {"Retry-After": "1"}, {}),
    ("POST", "/v1/user", "database_missing", {"Retry-After": "1"}, {}),
    ("PATCH", "/v1/user/abc123", "conflict_retries_exhausted", {"Retry-After": "1"}, {}),
    ("GET", "/_health?quick=false", "draining", {"Retry-After": "1"}, {}),
    ("GET", "/_health", "worker_stalled", {"Retry-After": "1"}, {"stalled": [1]}),
    ("POST", "/v1/user/abc123/verify", "busy", {"Retry-After": "1"}, {}),
    ("GET", "/v1/user/abc123", "unauthorized", {}, {}),
    ("GET", "/_metrics", "host_not_allowed", {}, {}),
]


@pytest.mark.parametrize(
    ("method", "path", "code", "headers", "extra"), PROBLEM_CASES, ids=[f"{c[2]}-{c[0]} {c[1]}" for c in PROBLEM_CASES]
)
def test_checker_accepts_every_problem_code_where_the_contract_puts_it(checker, method, path, code, headers, extra):
    checker.check(method, path, CONTRACT[code][0], {"Content-Type": PROBLEM, **headers}, body(problem(code, **extra)))


def test_every_contract_code_has_a_case():
    assert {case[2] for case in PROBLEM_CASES} == set(CONTRACT)


# --- SpecChecker: mismatches ---------------------------------------------------------


def test_rejects_undocumented_status(checker):
    with pytest.raises(AssertionError, match=r"GET /v1/user/abc123 -> 201: status 201 is not documented"):
        checker.check("GET", "/v1/user/abc123", 201, CREATED, body(user_doc()))


def test_rejects_body_violating_the_schema(checker):
    with pytest.raises(AssertionError, match=r"GET /v1/user/abc123 -> 200: .* at /name: 5 is not of type 'string'"):
        checker.check("GET", "/v1/user/abc123", 200, {"ETag": ETAG, "Content-Type": JSON}, body(user_doc(name=5)))


def test_rejects_missing_required_header(checker):
    headers = {k: v for k, v in CREATED.items() if k != "Location"}
    with pytest.raises(AssertionError, match=r"POST /v1/user -> 201: required response header 'Location'"):
        checker.check("POST", "/v1/user", 201, headers, body(user_doc()))


def test_rejects_problem_served_as_plain_json(checker):
    with pytest.raises(AssertionError, match=r"GET /v1/user/abc123 -> 404: Content-Type 'application/json' is not"):
        checker.check("GET", "/v1/user/abc123", 404, {"Content-Type": JSON}, body(problem("not_found")))


def test_rejects_document_served_as_problem(checker):
    with pytest.raises(AssertionError, match="Content-Type"):
        checker.check("GET", "/v1/user/abc123", 200, {"ETag": ETAG, "Content-Type": PROBLEM}, body(user_doc()))


def test_prefers_the_concrete_type_path(checker):
    # Valid as a generic Document, but the user schema forbids unknown properties.
    document = user_doc(unknown=True)
    checker.check("GET", "/v1/other/abc123", 200, {"ETag": ETAG, "Content-Type": JSON}, body(document))
    with pytest.raises(AssertionError, match=r"at /: Additional properties are not allowed"):
        checker.check("GET", "/v1/user/abc123", 200, {"ETag": ETAG, "Content-Type": JSON}, body(document))
    assert checker.match_path("/v1/user/abc123?x=1") == "/v1/user/{id}"
    assert checker.match_path("/v1/_types") == "/v1/_types"
    assert checker.match_path("/v1/user") == "/v1/user"
    assert checker.match_path("/v1/other") == "/v1/{type}"


def test_rejects_problem_with_wrong_code_for_its_status(checker):
    with pytest.raises(AssertionError, match=r"at /code"):
        checker.check(
            "PUT",
            "/v1/user/abc123",
            503,
            {"Content-Type": PROBLEM, "Retry-After": "1"},
            body(problem("conflict_retries_exhausted")),
        )


def test_rejects_stale_revision_without_current_or_etag(checker):
    with pytest.raises(AssertionError, match="'current' is a required property"):
        checker.check(
            "PUT", "/v1/user/abc123", 412, {"Content-Type": PROBLEM, "ETag": ETAG}, body(problem("stale_revision"))
        )
    with pytest.raises(AssertionError, match="required response header 'ETag'"):
        checker.check(
            "PUT",
            "/v1/user/abc123",
            412,
            {"Content-Type": PROBLEM},
            body(problem("stale_revision", current=user_doc())),
        )


def test_rejects_405_without_allow(checker):
    with pytest.raises(AssertionError, match="required response header 'Allow'"):
        checker.check("DELETE", "/_health", 405, {"Content-Type": PROBLEM}, body(problem("method_not_allowed")))


def test_rejects_body_on_a_bodiless_response(checker):
    with pytest.raises(AssertionError, match="documents no body"):
        checker.check("DELETE", "/v1/user/abc123", 204, {"Content-Type": JSON}, b"{}")


def test_rejects_non_json_body_and_missing_content_type(checker):
    with pytest.raises(AssertionError, match="not JSON"):
        checker.check("GET", "/_health", 200, {"Content-Type": JSON}, b"ok")
    with pytest.raises(AssertionError, match="no Content-Type"):
        checker.check("GET", "/_health", 200, {}, body({"status": "ok", "build": BUILD, "worker": 0}))


def test_rejects_unknown_path_and_undocumented_method(checker):
    with pytest.raises(AssertionError, match="no path in the spec matches"):
        checker.check("GET", "/v2/user", 200, {"Content-Type": JSON}, body({}))
    with pytest.raises(AssertionError, match="has no POST operation"):
        checker.check(
            "POST", "/_health", 200, {"Content-Type": JSON}, body({"status": "ok", "build": BUILD, "worker": 0})
        )


def test_rejects_bad_date_time_in_meta(checker):
    document = user_doc()
    document["meta"]["created_at"] = "yesterday"
    with pytest.raises(AssertionError, match="is not a 'date-time'"):
        checker.check("GET", "/v1/other/abc123", 200, {"ETag": ETAG, "Content-Type": JSON}, body(document))
