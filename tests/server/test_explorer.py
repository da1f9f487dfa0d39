"""What callers other than Python need from the HTTP surface: HEAD on documents, the API
explorer at /_docs (served from the sidecar, behind its tokens), the spec offline
(`data-service openapi`), and schemas code generators read as meant (64-bit integers, no
index signature of nulls in merge patches). The browser test of /_docs is
tests/server/test_explorer_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from asyncio.subprocess import PIPE
from dataclasses import replace

import pytest
from support import SAMPLE_MODELS, install_design_docs, running_app

from data_service.openapi import load_spec

PROBLEM = "application/problem+json"
TOKEN = "explorer-token-0123456789abcdef"


async def fetch(http, url: str, method: str = "GET", headers: dict | None = None):
    async with http.request(method, url, headers=headers or {}) as resp:
        return resp.status, resp.headers, await resp.read()


# --- HEAD ---------------------------------------------------------------------------------


async def test_head_answers_gets_headers_without_a_body(api, http, sidecar, db):
    await install_design_docs(db)
    created = await api.request("POST", "/v1/note", json={"title": "heads"})
    url = f"{sidecar}/v1/note/{created.body['id']}"
    get_status, get_headers, get_body = await fetch(http, url)
    status, headers, body = await fetch(http, url, "HEAD")
    assert (status, body) == (200, b"") and get_status == 200 and get_body
    assert headers["ETag"] == get_headers["ETag"] == created.etag
    assert headers["Content-Type"] == get_headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(get_body)  # what GET would send
    status, headers, body = await fetch(http, url, "HEAD", {"If-None-Match": created.etag})
    assert (status, body, headers["ETag"]) == (304, b"", created.etag)
    for path, expected in [("/v1/note/nosuchdoc", 404), ("/v1/note/-bad", 400), ("/v1/nosuchtype/abc", 404)]:
        status, headers, body = await fetch(http, sidecar + path, "HEAD")
        assert (status, body) == (expected, b""), path
        assert headers["Content-Type"] == PROBLEM, path
    replaced = await api.request(
        "PUT", f"/v1/note/{created.body['id']}", json={"title": "after"}, headers={"If-Match": created.etag}
    )
    assert replaced.status == 200
    status, headers, _ = await fetch(http, url, "HEAD")
    assert status == 200 and headers["ETag"] == replaced.etag  # never a stale cached one


# --- /_docs -------------------------------------------------------------------------------


async def test_the_explorer_is_served_from_the_sidecar(http, sidecar):
    status, headers, page = await fetch(http, f"{sidecar}/_docs", headers={"Accept": "text/html"})
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.decode())
    assert sources and all(src.startswith("/_docs/") for src in sources), sources  # nothing from elsewhere
    for src in sources:
        status, headers, body = await fetch(http, sidecar + src)
        assert status == 200 and body, src
        assert headers["Content-Type"].split(";")[0] in ("text/css", "text/javascript", "image/png"), src
    status, _, explorer = await fetch(http, f"{sidecar}/_docs/explorer.js")
    assert status == 200 and b'url: "/openapi.json"' in explorer
    status, headers, _ = await fetch(http, f"{sidecar}/_docs/index.html")
    assert status == 404 and headers["Content-Type"] == PROBLEM  # only the files the page uses
    status, _, _ = await fetch(http, f"{sidecar}/_docs", headers={"Accept": "application/json"})
    assert status == 406


async def test_the_explorer_is_behind_the_token(config, http, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)  # a secret file: owner only
    async with running_app(replace(config, api_token_file=str(tokens))) as (base, _):
        for path in ("/_docs", "/_docs/swagger-ui-bundle.js", "/_docs/explorer.js"):
            status, headers, _ = await fetch(http, base + path)
            assert status == 401 and headers["Content-Type"] == PROBLEM, path
            status, _, _ = await fetch(http, base + path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert status == 200, path


# --- the spec offline, and for generators ---------------------------------------------------


async def test_openapi_command_prints_what_the_sidecar_serves(http, sidecar):
    _, _, served = await fetch(http, f"{sidecar}/openapi.json")
    offline = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "data_service", "openapi", f"--models={SAMPLE_MODELS}", stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await offline.communicate()
    assert (offline.returncode, stderr) == (0, b"") and stdout == served


def schemas_in(node, where: str = ""):
    """Every (location, schema) below ``node`` that declares a ``type``."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str | list):
            yield where, node
        for key, value in node.items():
            if key not in ("example", "examples", "default", "const", "enum"):
                yield from schemas_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from schemas_in(value, f"{where}/{index}")


@pytest.mark.parametrize("served", [True, False], ids=["served", "static"])
async def test_every_integer_is_int64_and_every_number_double(http, sidecar, served):
    if served:
        _, _, raw = await fetch(http, f"{sidecar}/openapi.json")
        spec = json.loads(raw)
    else:
        spec = load_spec()
    found = {"int64": 0, "double": 0}
    for where, schema in schemas_in(spec):
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if "integer" in kinds:
            assert schema.get("format") == "int64", where
            found["int64"] += 1
        elif "number" in kinds:
            assert schema.get("format") == "double", where
            found["double"] += 1
    assert found["int64"] > 30 and found["double"] >= 1
    if served:  # the models' own: note.counter, user.age in every schema of the type
        assert spec["components"]["schemas"]["user"]["properties"]["age"]["format"] == "int64"
        assert spec["components"]["schemas"]["note_patch"]["properties"]["counter"] == {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": 2**53 - 1,
            "format": "int64",
        }


async def test_merge_patch_schemas_have_no_index_signature_of_nulls(http, sidecar):
    _, _, raw = await fetch(http, f"{sidecar}/openapi.json")
    schemas = json.loads(raw)["components"]["schemas"]
    for name in ("user_patch", "note_patch", "event_patch"):
        for where, schema in schemas_in(schemas[name], name):
            extra = schema.get("additionalProperties")
            assert extra is None or extra.get("type") != "null", where  # what broke typescript clients
            assert not ("anyOf" in schema and isinstance(schema.get("type"), str)), where
    user = schemas["user_patch"]
    assert user["unevaluatedProperties"] == {"const": None}  # undeclared names: null only
    assert user["properties"]["country"]["type"] == ["string", "null"] and None in user["properties"]["country"]["enum"]
    assert user["properties"]["address"]["unevaluatedProperties"] == {"const": None}
