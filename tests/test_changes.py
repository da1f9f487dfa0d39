"""The verified change feed: representations in order, tampered documents reported not passed
on, opaque positions that resume exactly, long poll and server-sent events."""

from __future__ import annotations

import asyncio

import orjson
from test_api import NOTE

from data_service.canonical import canonical


async def create_notes(api, n: int, prefix: str = "n") -> list[dict]:
    notes = []
    for i in range(n):
        reply = await api.request("POST", "/v1/note", json={**NOTE, "title": f"{prefix}{i}"})
        assert reply.status == 201
        notes.append(reply.body)
    return notes


async def feed(api, query: str = "") -> dict:
    reply = await api.request("GET", f"/v1/note/_changes{query}")
    assert reply.status == 200, reply.body
    return reply.body


async def test_positions_resume_exactly_and_belong_to_their_feed(api):
    notes = await create_notes(api, 6)
    page = await feed(api, "?limit=2")
    seen = [r["id"] for r in page["results"]]
    while len(seen) < 6:  # resume from the position of the last item seen, like a reconnecting consumer
        page = await feed(api, f"?since={page['results'][-1]['position']}&limit=2")
        seen += [r["id"] for r in page["results"]]
    assert sorted(seen) == sorted(n["id"] for n in notes) and len(seen) == 6  # each once
    foreign = await api.request("GET", f"/v1/user/_changes?since={page['last']}")
    assert foreign.status == 400 and foreign.body["code"] == "invalid_query"
    garbled = await api.request("GET", "/v1/note/_changes?since=AAAA")
    assert garbled.status == 400 and garbled.body["code"] == "invalid_query"
    for since, header in (("", page["last"]), (page["last"], ""), ("now", "AAAA")):  # each value checked
        both = await api.request("GET", f"/v1/note/_changes?since={since}", headers={"Last-Event-ID": header})
        assert both.status == 400 and both.body["code"] == "invalid_query", (since, header)
    bad = await api.request("GET", "/v1/note/_changes?limit=٣")
    assert bad.status == 400


async def test_a_long_poll_answers_when_something_changes(api):
    now = await feed(api, "?since=now")
    assert now["results"] == []
    waiting = asyncio.ensure_future(feed(api, f"?since={now['last']}&feed=longpoll&timeout=20"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    [note] = await create_notes(api, 1, "late")
    body = await asyncio.wait_for(waiting, 10)
    assert [r["id"] for r in body["results"]] == [note["id"]]


async def events(http, url: str, count: int, last_event_id: str | None = None) -> list[tuple[str, dict]]:
    """Read ``count`` server-sent events, then hang up."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    got: list[tuple[str, dict]] = []
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        event: dict = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in event:
                    got.append((event["id"], orjson.loads(event["data"])))
                    if len(got) == count:
                        return got
                event = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                event[field] = value
    return got


async def test_an_event_stream_consumer_sees_every_change_once_across_a_reconnect(api, http, sidecar):
    notes = await create_notes(api, 4)
    first = await events(http, f"{sidecar}/v1/note/_changes", 2)  # then the consumer drops the connection
    more = await create_notes(api, 3, "m")
    # an EventSource reconnects to the URL it began with; Last-Event-ID, the later position, wins over since
    again = f"{sidecar}/v1/note/_changes?since={first[0][0]}"
    rest = await asyncio.wait_for(events(http, again, 5, last_event_id=first[-1][0]), 20)
    seen = [item["id"] for _, item in first + rest]
    assert sorted(seen) == sorted(n["id"] for n in notes + more) and len(seen) == 7  # each once
    shown = {item["id"]: item["doc"] for _, item in first + rest}
    assert all(canonical(shown[n["id"]]) == canonical(n) for n in notes + more)
