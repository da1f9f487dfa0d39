"""The served spec says exactly what the server enforces (issue 12, finding 7): the id
pattern, ETag, cursor and position constraints, per-type merge-patch and verify bodies,
bcrypt's byte limit, the per-type sort values, and 406 — declared and produced. Each
claim is read from ``GET /openapi.json`` and checked against the running sidecar."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from support import SAMPLE_MODELS, install_design_docs

from data_service import query
from data_service.envelope import ID_PATTERN
from data_service.models import load_models
from data_service.openapi import load_spec

PROBLEM = "application/problem+json"
BASE = "https://data-service.invalid/openapi.json"


@pytest.fixture
async def spec(sidecar, http):
    async with http.get(f"{sidecar}/openapi.json") as resp:
        return await resp.json()


def validator(spec: dict, name: str) -> Draft202012Validator:
    """A validator of ``components/schemas/<name>`` with the spec's ``$ref``s resolvable."""
    registry = Registry().with_resource(BASE, DRAFT202012.create_resource(spec))
    return Draft202012Validator({"$ref": f"{BASE}#/components/schemas/{name}"}, registry=registry)


def body_schema(operation: dict) -> dict:
    return next(iter(operation["requestBody"]["content"].values()))["schema"]


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


# --- ids ---------------------------------------------------------------------------


async def test_document_id_pattern_is_the_one_the_server_checks(api, spec):
    assert spec["components"]["schemas"]["DocumentId"]["pattern"] == ID_PATTERN.pattern
    assert load_spec()["components"]["schemas"]["DocumentId"]["pattern"] == ID_PATTERN.pattern  # the static copy
    assert spec["components"]["parameters"]["DocumentId"]["schema"] == {"$ref": "#/components/schemas/DocumentId"}
    assert spec["components"]["schemas"]["note"]["properties"]["id"]["pattern"] == ID_PATTERN.pattern
    ids = validator(spec, "DocumentId")
    for docid, valid in [("a", True), ("A" * 128, True), ("a" * 129, False), ("-a", False), ("a\n", False)]:
        if "\n" not in docid:  # Python's ``$`` (jsonschema's) also matches before a final newline; ECMA's does not
            assert ids.is_valid(docid) is valid, docid
        reply = await api.request("GET", f"/v1/note/{docid.replace(chr(10), '%0A')}")
        assert (reply.status, reply.body["code"]) == ((404, "not_found") if valid else (400, "invalid_id")), docid


# --- conditions, cursors, positions ---------------------------------------------------


async def test_issued_etags_cursors_and_positions_match_their_schemas(api, db, spec):
    await install_design_docs(db)
    for title in ("one", "two"):
        created = await api.request("POST", "/v1/note", json={"title": title})
    etags = validator(spec, "ETagCondition")
    assert etags.is_valid(created.etag) and etags.is_valid("*") and etags.is_valid(f'W/{created.etag}, "1-a"')
    assert etags.is_valid('""')  # an empty tag is well formed (and matches nothing)
    assert not any(etags.is_valid(v) for v in ("", created.etag.strip('"'), "W/", f"{created.etag},", '"a,b"', "*, *"))
    for bad in ('"a,b"', f"{created.etag},", "*, *"):  # what the pattern refuses, the server refuses
        reply = await api.request("GET", f"/v1/note/{created.body['id']}", headers={"If-None-Match": bad})
        assert (reply.status, reply.body["code"]) == (400, "bad_request"), bad

    page = await api.request("GET", "/v1/note?limit=1")
    assert page.body["next"] and validator(spec, "Token").is_valid(page.body["next"])
    assert not validator(spec, "Token").is_valid("")
    assert (await api.request("GET", "/v1/note?limit=1&cursor=" + page.body["next"])).status == 200

    feed = await api.request("GET", "/v1/note/_changes")
    positions = validator(spec, "Position")
    assert all(positions.is_valid(p) for p in [feed.body["last"], *(r["position"] for r in feed.body["results"])])
    assert positions.is_valid("now") and not positions.is_valid("") and not positions.is_valid("0")


# --- per-type bodies -------------------------------------------------------------------


PATCHES = [  # (patch, whether the served user_patch schema and the server both accept it)
    ({"age": None}, True),
    ({"age": 37, "tags": ["x"]}, True),
    ({"address": {"city": None}}, True),  # merge patches reach into objects
    ({"address": {"country": None}}, True),  # removing what cannot be there removes nothing
    ({"undeclared": None}, True),
    ({"undeclared": 1}, False),
    ({"address": {"country": "UK"}}, False),
    ({"name": None}, False),  # required: removing it cannot leave a valid document
    ({"age": "old"}, False),
    ({"tags": ["x", None]}, False),  # arrays are replaced whole, nulls and all
    ({"meta": None}, False),  # reserved names
    ({"_rev": None}, False),
    ({"password": "short"}, False),
]


@pytest.mark.parametrize(("patch", "accepted"), PATCHES)
async def test_the_type_patch_schema_is_what_the_server_accepts(api, spec, patch, accepted):
    operation = spec["paths"]["/v1/user/{id}"]["patch"]
    assert body_schema(operation) == {"$ref": "#/components/schemas/user_patch"}
    assert validator(spec, "user_patch").is_valid(patch) is accepted
    created = await api.request("POST", "/v1/user", json={"email": "ada@example.com", "name": "Ada", "age": 36})
    reply = await api.request(
        "PATCH",
        f"/v1/user/{created.body['id']}",
        json=patch,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert reply.status == (200 if accepted else 422), reply.body


REPLACEMENTS = [  # (PUT body, whether the served user_replacement schema and the server both accept it)
    ({"name": "Ada"}, True),  # the hashed email and password are kept as stored
    ({"name": "Ada", "ssn": "658-85-5656"}, True),  # schemathesis' finding: omitted email is no missing email
    ({"name": "Ada", "password": None}, True),  # null removes an optional hashed property
    ({"name": "Ada", "email": "b@example.com"}, True),
    ({"name": "Ada", "email": None}, False),  # removing a required one cannot leave a valid document
    ({"email": "a@example.com"}, False),  # name is returned: a replacement must state it
    ({"name": "Ada", "age": None}, False),  # only never-returned properties may be null
    ({"name": "Ada", "password": "short"}, False),
    ({"name": "Ada", "meta": {}}, False),
]


@pytest.mark.parametrize(("body", "accepted"), REPLACEMENTS)
async def test_the_type_replacement_schema_is_what_the_server_accepts(api, spec, body, accepted):
    operation = spec["paths"]["/v1/user/{id}"]["put"]
    assert body_schema(operation) == {"$ref": "#/components/schemas/user_replacement"}
    assert validator(spec, "user_replacement").is_valid(body) is accepted
    ada = {"email": "ada@example.com", "name": "Ada", "password": "p" * 8}
    created = await api.request("POST", "/v1/user", json=ada)
    path = f"/v1/user/{created.body['id']}"
    reply = await api.request("PUT", path, json=body, headers={"If-Match": "*"})
    assert reply.status == (200 if accepted else 422), reply.body
    stored = await api.request("GET", path)
    assert stored.etag == (reply.etag if accepted else created.etag)  # a refused body stored nothing


async def test_verify_bodies_list_the_types_hashed_properties(api, spec):
    paths = spec["paths"]
    assert body_schema(paths["/v1/user/{id}/verify"]["post"]) == {"$ref": "#/components/schemas/user_verify"}
    assert "/v1/note/{id}/verify" not in paths and "/v1/event/{id}/verify" not in paths  # nothing to verify
    verify = spec["components"]["schemas"]["user_verify"]
    assert set(verify["properties"]) == {"email", "password"} and verify["additionalProperties"] is False
    password = verify["properties"]["password"]
    assert password["x-max-bytes"] == 72 and "72 bytes" in password["description"] and "maxLength" not in password
    for schema in ("user_input", "user_patch"):
        declared = spec["components"]["schemas"][schema]["properties"]["password"]
        declared = declared.get("anyOf", [declared])[0]
        assert declared["x-max-bytes"] == 72 and "72 bytes" in declared["description"]

    created = await api.request("POST", "/v1/user", json={"email": "a@example.com", "name": "A", "password": "é" * 36})
    docid = created.body["id"]
    candidates = validator(spec, "user_verify")
    for body, status in [
        ({"password": "é" * 36}, 200),  # 72 bytes
        ({"password": "é" * 37}, 422),  # 37 characters, 74 bytes: the byte limit, not a character one
        ({"email": "a@example.com", "password": "x"}, 200),
        ({"name": "A"}, 422),
        ({}, 422),
    ]:
        # 37 "é" fit the schema (no character limit) and its x-max-bytes says the server refuses them
        assert candidates.is_valid(body) is (bool(body) and set(body) <= {"email", "password"}), body
        reply = await api.request("POST", f"/v1/user/{docid}/verify", json=body)
        assert reply.status == status, (body, reply.body)


async def test_generic_paths_describe_only_undeclared_types(api, spec):
    type_name = spec["components"]["parameters"]["TypeName"]["schema"]
    assert type_name["not"] == {"enum": ["user", "note", "event"]}
    assert (await api.request("POST", "/v1/nosuchtype", json={})).body["code"] == "unknown_type"


async def test_sort_values_per_type_are_those_the_server_accepts(api, db, spec):
    await install_design_docs(db)
    for model in load_models(SAMPLE_MODELS):
        parameters = spec["paths"][f"/v1/{model.name}"]["get"]["parameters"]
        enum = next(p for p in parameters if p["name"] == "sort")["schema"]["enum"]
        assert enum == query.sorts(model) and "meta.created_at" in enum
        for value in enum:
            assert (await api.request("GET", f"/v1/{model.name}?sort={value}")).status == 200, value
        for value in {f"{sign}{name}" for name in model.properties for sign in ("", "-")} - set(enum):
            assert (await api.request("GET", f"/v1/{model.name}?sort={value}")).status == 400, value


# --- 406 -----------------------------------------------------------------------------


async def test_406_is_declared_on_every_operation(spec):
    missing = [f"{method.upper()} {path}" for path, method, op in operations(spec) if "406" not in op["responses"]]
    assert not missing


@pytest.mark.parametrize(
    ("method", "path", "accept", "status"),
    [
        ("GET", "/v1/_types", "text/html", 406),
        ("GET", "/v1/_types", "application/json;q=0, text/html", 406),
        ("GET", "/v1/_types", "text/html, */*;q=0.1", 200),
        ("GET", "/v1/_types", "application/*", 200),
        ("GET", "/v1/_types", "application/problem+json", 200),
        ("GET", "/_health", "image/png", 406),
        ("GET", "/openapi.json", "application/xml", 406),
        ("GET", "/v1/note", "text/csv", 406),
        ("GET", "/v1/note/_changes", "text/html", 406),
        ("GET", "/v1/note/abc", "text/html", 406),  # before the id is even looked up
        ("GET", "/v1/note/abc", "*/*", 404),
    ],
)
async def test_406_is_produced_as_a_problem(api, method, path, accept, status):
    reply = await api.request(method, path, headers={"Accept": accept})  # checked against the spec
    assert reply.status == status
    if status == 406:
        assert reply.headers["Content-Type"] == PROBLEM and reply.body["code"] == "not_acceptable"


async def test_406_stores_nothing(api, db):
    reply = await api.request("POST", "/v1/note", json={"title": "never"}, headers={"Accept": "text/html"})
    assert reply.status == 406
    rows = (await db.all_docs()).rows
    assert not [row for row in rows if not row["id"].startswith("_design/")]


async def test_metrics_negotiate_their_text(sidecar, http):
    for accept, status in [("text/plain", 200), ("text/*", 200), ("application/json", 406), (None, 200)]:
        headers = {"Accept": accept} if accept else {}
        async with http.get(f"{sidecar}/_metrics", headers=headers) as resp:
            assert resp.status == status, accept
            if status == 406:
                assert resp.content_type == PROBLEM and (await resp.json())["code"] == "not_acceptable"
