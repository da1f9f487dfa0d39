"""The helpers that keep values out of error messages and logs."""

from __future__ import annotations

from data_service.logs import redact, redact_text


def test_redaction_helpers():
    assert redact("/v1/user?email=a@b") == "/v1/user?[redacted]"
    assert redact("/v1/user") == "/v1/user"
    line = "GET http://127.0.0.1:5984/db/_design/x/_view/v?key=%22abc%22&limit=2 failed; /v1/user?email=a ok?"
    assert redact_text(line) == (
        "GET http://127.0.0.1:5984/db/_design/x/_view/v?[redacted] failed; /v1/user?[redacted] ok?"
    )
