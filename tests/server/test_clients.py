"""Callers in other languages: a Python client generated from the served /openapi.json
(openapi-python-client, zero generator warnings), and the Node.js example
(``examples/node/``, Node's own ``fetch`` only), each against the running sidecar."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sys
from dataclasses import replace

import pytest
from support import ROOT, install_design_docs, run, running_app

PACKAGE = "ds_client"
TOKEN = "client-token-0123456789abcdef"
NODE_BIN = str(ROOT / "node_modules" / ".bin") + os.sep
TSC_FLAGS = ("--target", "ES2022", "--module", "NodeNext", "--moduleResolution", "NodeNext", "--types", "node")
PER_TYPE = ("create_document", "get_document", "replace_document", "patch_document", "delete_document")


@pytest.fixture
async def generated(sidecar, http, tmp_path, monkeypatch):
    """The client package generated from what the sidecar serves, importable."""
    async with http.get(f"{sidecar}/openapi.json") as resp:
        served = await resp.read()
    (tmp_path / "openapi.json").write_bytes(served)
    bin_dir = os.path.dirname(sys.executable)  # the generator formats its output with ruff from here
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    status, output = await run(
        os.path.join(bin_dir, "openapi-python-client"),
        "generate",
        "--path=openapi.json",
        f"--output-path={PACKAGE}",
        "--meta=none",
        cwd=tmp_path,
        env=env,
    )
    assert status == 0 and output == f"Generating {PACKAGE}\n", output  # not one warning
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        monkeypatch.delitem(sys.modules, name)
    yield importlib.import_module(PACKAGE), tmp_path / PACKAGE, json.loads(served)["paths"]


async def test_generated_python_client_creates_reads_updates_gets_412_and_queries(generated, sidecar, db):
    client_package, directory, spec = generated
    await install_design_docs(db)
    models = importlib.import_module(f"{PACKAGE}.models")
    generic = {  # every operation of the generic /v1/{type} paths, e.g. replace_document
        re.sub("([A-Z])", r"_\1", operation["operationId"]).lower()
        for path, item in spec.items()
        if path.startswith("/v1/{type}")
        for operation in item.values()
        if "operationId" in operation
    }
    assert {*PER_TYPE, "query_documents", "verify_secrets", "get_changes"} <= generic
    for type_name in ("user", "note", "event"):  # exists per declared type in the generated client
        operations = {p.stem for p in (directory / "api" / type_name).glob("*.py")} - {"__init__"}
        verifiable = type_name == "user"  # only types with bcrypt or sha3-512 properties have /verify
        assert operations == {f"{op}_{type_name}" for op in generic if verifiable or op != "verify_secrets"}
    ops = {op: importlib.import_module(f"{PACKAGE}.api.note.{op}_note") for op in (*PER_TYPE, "query_documents")}

    client = client_package.Client(base_url=sidecar, raise_on_unexpected_status=True)
    created = await ops["create_document"].asyncio_detailed(client=client, body=models.NoteInput(title="first"))
    assert created.status_code == 201 and isinstance(created.parsed, models.Note)
    docid, first_etag = created.parsed.id, created.headers["etag"]

    read = await ops["get_document"].asyncio_detailed(docid, client=client)
    assert read.status_code == 200 and read.parsed.title == "first" and read.headers["etag"] == first_etag

    replaced = await ops["replace_document"].asyncio_detailed(
        docid, client=client, body=models.NoteInput(title="second"), if_match=first_etag
    )
    assert replaced.status_code == 200 and replaced.parsed.title == "second"
    assert replaced.headers["etag"] != first_etag

    stale = await ops["replace_document"].asyncio_detailed(
        docid, client=client, body=models.NoteInput(title="lost update"), if_match=first_etag
    )
    assert stale.status_code == 412 and isinstance(stale.parsed, models.NoteStaleRevision)  # a typed problem
    assert stale.parsed.code == models.StaleRevisionProblemCode.STALE_REVISION and stale.parsed.retryable is True
    assert isinstance(stale.parsed.current, models.Note)  # a note, not a generic document
    assert stale.parsed.current.title == "second" and stale.headers["etag"] == replaced.headers["etag"]

    missing = await ops["get_document"].asyncio_detailed("nosuchdoc", client=client)
    assert missing.status_code == 404 and missing.parsed.code == models.NotFoundProblemCode.NOT_FOUND

    for title in ("third", "fourth"):
        await ops["create_document"].asyncio_detailed(client=client, body=models.NoteInput(title=title))
    first_page = await ops["query_documents"].asyncio_detailed(client=client, limit=2)
    assert first_page.status_code == 200 and len(first_page.parsed.items) == 2 and first_page.parsed.next_
    rest = await ops["query_documents"].asyncio_detailed(client=client, limit=2, cursor=first_page.parsed.next_)
    titles = [item.title for item in first_page.parsed.items + rest.parsed.items]
    assert sorted(titles) == ["fourth", "second", "third"] and rest.parsed.next_ is None
    assert all(isinstance(item, models.Note) for item in first_page.parsed.items)


@pytest.fixture
async def guarded(config, db, tmp_path):
    """A sidecar that wants a bearer token, the token file its callers read, and the
    variables that point them at both."""
    await install_design_docs(db)
    tokens = tmp_path / "api_tokens"
    tokens.write_text(f"# callers\n{TOKEN}\n")
    tokens.chmod(0o600)  # a secret file: owner only
    async with running_app(replace(config, api_token_file=str(tokens))) as (base, _):
        yield base, tokens, {**os.environ, "DATA_SERVICE_TOKEN_FILE": str(tokens)}


async def test_node_example_against_the_sidecar(guarded):
    sidecar, tokens, env = guarded
    example = str(ROOT / "examples" / "node" / "notes.mjs")
    status, output = await run("node", example, sidecar)
    assert status != 0 and "create: expected 201, got 401" in output  # the token is needed
    status, output = await run("node", example, sidecar, env=env)
    assert status == 0, output
    status, flagged = await run("node", example, sidecar, f"--token-file={tokens}")
    assert status == 0, flagged
    steps = [json.loads(line) for line in output.splitlines()]
    by_step = {step["step"]: step for step in steps}
    assert [step["step"] for step in steps] == ["create", "get", "update", "stale", "retried", "query"]
    assert by_step["create"]["status"] == 201 and by_step["get"]["status"] == 200
    assert by_step["update"]["status"] == 200 and by_step["update"]["title"] == "second"
    assert by_step["stale"] == {"step": "stale", "status": 412, "code": "stale_revision", "retryable": True}
    assert by_step["retried"]["status"] == 200 and by_step["retried"]["attempts"] == 2
    assert by_step["retried"]["body"] == "appended by the retry loop"
    assert by_step["query"]["status"] == 200 and by_step["query"]["ids"] == [by_step["create"]["id"]]


async def test_typescript_client_type_checks_and_round_trips(guarded, http, tmp_path):
    """openapi-typescript types from the served spec, examples/typescript/notes.mts through
    `tsc --strict` (with expectations that fail to compile if the types say too little),
    then run: create, get, update, a 412 whose `current` is a typed note, the retry loop."""
    sidecar, _, env = guarded
    async with http.get(f"{sidecar}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        (tmp_path / "openapi.json").write_bytes(await resp.read())
    for name in ("notes.mts", "tsconfig.json"):
        shutil.copy(ROOT / "examples" / "typescript" / name, tmp_path / name)
    shutil.copy(ROOT / "tests" / "typescript_expectations.mts", tmp_path)
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    status, output = await run(NODE_BIN + "openapi-typescript", "openapi.json", "-o", "schema.d.ts", cwd=tmp_path)
    assert status == 0 and "schema.d.ts" in output and "warn" not in output.lower(), output
    expectations = (*TSC_FLAGS, "--noEmit", "typescript_expectations.mts")
    status, output = await run(NODE_BIN + "tsc", "--strict", *expectations, cwd=tmp_path)
    assert (status, output) == (0, ""), output
    status, output = await run(NODE_BIN + "tsc", "--strict", "-p", ".", cwd=tmp_path)
    assert (status, output) == (0, ""), output
    status, output = await run("node", str(tmp_path / "out" / "notes.mjs"), sidecar, env=env)
    assert status == 0, output
    by_step = {step["step"]: step for step in map(json.loads, output.splitlines())}
    assert list(by_step) == ["create", "get", "update", "stale", "retried", "query"]
    assert by_step["create"]["status"] == 201 and by_step["get"]["title"] == "first"
    assert by_step["update"]["title"] == "second"
    assert by_step["stale"] == {"step": "stale", "status": 412, "code": "stale_revision", "current": "second"}
    assert by_step["retried"] == {
        "step": "retried",
        "attempts": 2,
        "title": "second",
        "body": "appended by the retry loop",
    }
    assert by_step["query"]["ids"] == [by_step["create"]["id"]]
