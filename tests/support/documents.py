"""Sample documents of ``models/sample.yaml`` and what tests do with them through a sidecar
or straight in CouchDB."""

from __future__ import annotations

ALICE = {  # a user with every kind of protected value
    "email": "alice@example.com",
    "name": "Alice",
    "password": "p4ss-w0rd-Ω",
    "ssn": "123-45-6789",
    "country": "GB",
    "age": 41,
}
NOTE = {"title": "counter", "counter": 0, "attributes": {}}
MERGE = {"Content-Type": "application/merge-patch+json"}
EVENTS = [  # sample events a query test writes: owner, kind, created_at
    ("ann", "login", "2026-01-01T10:00:00Z"),
    ("ann", "created", "2026-01-02T10:00:00Z"),
    ("ann", "login", "2026-01-03T10:00:00Z"),
    ("bob", "login", "2026-01-01T12:00:00Z"),
    ("bob", "deleted", "2026-01-04T09:00:00Z"),
    ("carl", "updated", "2026-01-05T08:00:00Z"),
]


async def create_user(api, **overrides) -> dict:
    """ALICE (with ``overrides``) created through ``api``; the 201's body."""
    reply = await api.request("POST", "/v1/user", json={**ALICE, **overrides})
    assert reply.status == 201, reply.body
    return reply.body


async def new_note(api, title: str):
    """A note created through ``api`` (cached there: written there), and its URL."""
    created = await api.request("POST", "/v1/note", json={"title": title})
    assert created.status == 201
    return created, f"/v1/note/{created.body['id']}"


async def stored_docs(db) -> list[dict]:
    """Every document of a declared type in CouchDB, read directly (not through the sidecar):
    no design documents, no Idempotency-Key records."""
    rows = (await db.all_docs(include_docs=True)).rows
    return [
        row["doc"] for row in rows if not row["id"].startswith("_design/") and not row["doc"]["type"].startswith("ds:")
    ]
