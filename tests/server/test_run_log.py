"""The log of a real run: JSON lines with the request's fields (request id, trace id, CouchDB
time), and no protected value anywhere in it."""

from __future__ import annotations

import io
import json
import logging
import re
from urllib.parse import quote

import pytest
from support import install_design_docs
from support.tracing import TRACEPARENT

from data_service.logs import JsonFormatter

PASSWORD = "Correct-Horse-Battery-7"


SSN = "987-65-4321"


EMAIL = "grace.hopper.secret@example.com"


SHORT_PASSWORD = "Sh0rtPw"  # fails minLength: a 422 that must not log the value


QUERY_TOKEN = "query-token-4f1e9a"


SECRETS = [PASSWORD, SSN, EMAIL, quote(EMAIL), quote(EMAIL, safe=""), SHORT_PASSWORD, QUERY_TOKEN]


@pytest.fixture
def json_log():
    """Everything logged during the test, as the JSON lines ``serve`` would write."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "data_service.access"]


async def test_a_runs_log_is_json_lines_with_request_fields_and_no_protected_value(api, db, couch, json_log):
    await install_design_docs(db)
    user = {"email": EMAIL, "name": "Grace", "password": PASSWORD, "ssn": SSN, "country": "NO"}
    created = await api.request(
        "POST", "/v1/user", json=user, headers={"X-Request-Id": "caller-1", "traceparent": TRACEPARENT}
    )
    assert created.status == 201 and created.headers["X-Request-Id"] == "caller-1"
    docid = created.body["id"]
    assert (await api.request("GET", f"/v1/user/{docid}")).status == 200
    assert len((await api.request("GET", f"/v1/user?email={quote(EMAIL)}")).body["items"]) == 1
    verified = await api.request("POST", f"/v1/user/{docid}/verify", json={"password": PASSWORD})
    assert verified.body == {"matches": {"password": True}}
    stale = await api.request(
        "PATCH",
        f"/v1/user/{docid}",
        json={"ssn": "123-45-6789"},
        headers={"Content-Type": "application/merge-patch+json", "If-Match": '"1-0"'},
    )
    assert stale.status == 412
    invalid = await api.request("POST", "/v1/user", json={**user, "password": SHORT_PASSWORD})
    assert invalid.status == 422
    unmatched = await api.request("GET", f"/v1/nosuch?token={QUERY_TOKEN}", headers={"X-Request-Id": "bad id"})
    assert unmatched.status == 404
    assert re.fullmatch("[0-9a-f]{32}", unmatched.headers["X-Request-Id"])
    # a document edited in CouchDB directly: the store's warning carries the request id
    raw = await db.get(docid)
    await db.put({**raw, "name": "Mallory"})
    fresh = {"X-Request-Id": "caller-2", "Cache-Control": "no-cache"}  # past the read cache
    tampered = await api.request("GET", f"/v1/user/{docid}", headers=fresh)
    assert tampered.status == 500

    text = json_log.getvalue()
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} reached the log"
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = access_lines(lines)
    assert [(line["method"], line["route"], line["status"]) for line in access] == [
        ("POST", "/v1/{type}", 201),
        ("GET", "/v1/{type}/{id}", 200),
        ("GET", "/v1/{type}", 200),
        ("POST", "/v1/{type}/{id}/verify", 200),
        ("PATCH", "/v1/{type}/{id}", 412),
        ("POST", "/v1/{type}", 422),
        ("GET", "/v1/{type}", 404),
        ("GET", "/v1/{type}/{id}", 500),
    ]
    create = access[0]
    assert create["request_id"] == "caller-1" and create["trace_id"] == TRACEPARENT.split("-")[1]
    assert create["doc_type"] == "user" and create["doc_id"] == docid and "code" not in create
    assert create["couchdb_requests"] >= 1 and 0 < create["couchdb_ms"] <= create["duration_ms"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", create["time"])
    if (await couch.server_info()).kind == "couchdb":  # CouchDB answers with the id we sent it
        assert create["couchdb_request_ids"] == ["caller-1"]
    else:  # the dev server sends no X-Couch-Request-ID
        assert "couchdb_request_ids" not in create
    assert (access[4]["code"], access[4]["level"]) == ("stale_revision", "info")  # the caller's to handle
    assert (access[5]["code"], access[5]["doc_type"]) == ("validation_failed", "user")
    assert access[6]["request_id"] == unmatched.headers["X-Request-Id"] and access[6]["couchdb_requests"] == 0
    assert access[6]["code"] == "unknown_type" and "doc_type" not in access[6]
    assert (access[7]["code"], access[7]["level"], access[7]["doc_id"]) == ("integrity_violation", "error", docid)
    warning = next(line for line in lines if line["message"].startswith("integrity violation"))
    assert warning["request_id"] == "caller-2" and docid in warning["message"]
