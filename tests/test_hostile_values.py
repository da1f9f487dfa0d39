"""Hostile values at the door (issue 12, findings 2, 4, 5 and 8), over HTTP against the
running sidecar and a real CouchDB: numbers and depth, bcrypt backpressure, strict
parsing, PUT/PATCH semantics. Every response is checked against the served spec."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
import pytest
from support import running_app
from test_api import stored_docs

from data_service.models import MAX_NESTING, MAX_SAFE, NestedTooDeep, NumberOutOfRange, check_limits

JSON = {"Content-Type": "application/json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def nested(levels: int, leaf: str = "1") -> str:
    """``levels`` objects one inside the other, as JSON text (orjson writes no more than 254)."""
    return '{"a":' * levels + leaf + "}" * levels


# -- finding 2: numbers and depth ------------------------------------------------------

BEYOND = [
    "18446744073709551616",
    "1e300",
    "-9223372036854775809",
    "576460752303423487",
    "4614132551791981568",
    "-1.7976931348623157e+308",
    str(MAX_SAFE + 1),
    str(-MAX_SAFE - 1),
]


@pytest.mark.parametrize("number", BEYOND)
async def test_numbers_beyond_2_53_are_refused_and_nothing_is_stored(api, db, number):
    body = f'{{"title": "n", "counter": {number}}}'.encode()
    reply = await api.request("POST", "/v1/note", data=body, headers=JSON)
    assert reply.status == 422 and reply.body["code"] == "number_out_of_range"
    assert reply.body["errors"][0]["path"] == "/counter"
    assert number not in str(reply.body)  # the path, never the value
    bulk = f'{{"items": [{{"title": "n", "counter": {number}}}]}}'.encode()
    assert (await api.request("POST", "/v1/note/_bulk", data=bulk, headers=JSON)).status == 422
    assert await stored_docs(db) == []


async def test_the_largest_safe_integers_round_trip(api):
    for number in (MAX_SAFE, -MAX_SAFE):
        created = await api.request(
            "POST",
            "/v1/event",
            json={
                "owner": "o",
                "kind": "login",
                "created_at": "2024-01-01T00:00:00Z",
                "payload": {"n": number, "f": 1.5e15},
            },
        )
        assert created.status == 201
        got = await api.request("GET", f"/v1/event/{created.body['id']}")
        assert got.status == 200 and got.body["payload"] == {"n": number, "f": 1.5e15}


@pytest.mark.parametrize("text", ["1e309", "-1e400", "NaN", "Infinity"])
async def test_non_finite_numbers_are_malformed_json(api, db, text):
    reply = await api.request("POST", "/v1/note", data=f'{{"title": "n", "counter": {text}}}'.encode(), headers=JSON)
    assert reply.status == 400 and reply.body["code"] == "invalid_json"
    assert await stored_docs(db) == []


async def test_nesting_up_to_the_limit_is_stored(api):
    # the body is one level, "payload" the second: MAX_NESTING in all
    body = (
        f'{{"owner": "o", "kind": "login", "created_at": "2024-01-01T00:00:00Z", "payload": {nested(MAX_NESTING - 1)}}}'
    )
    created = await api.request("POST", "/v1/event", data=body.encode(), headers=JSON)
    assert created.status == 201
    got = await api.request("GET", f"/v1/event/{created.body['id']}")
    assert got.status == 200 and got.body["payload"] == created.body["payload"]


@pytest.mark.parametrize("levels", [MAX_NESTING, 255, 256, 1_000, 1_023])  # + the body: up to 1,024
async def test_deeper_nesting_is_refused_and_nothing_is_stored(api, db, levels):
    body = f'{{"owner": "o", "kind": "login", "created_at": "2024-01-01T00:00:00Z", "payload": {nested(levels)}}}'
    reply = await api.request("POST", "/v1/event", data=body.encode(), headers=JSON)
    assert reply.status == 422 and reply.body["code"] == "nested_too_deep"
    assert reply.body["errors"][0]["path"].startswith("/payload/a/a")
    assert await stored_docs(db) == []


async def test_nesting_beyond_what_the_parser_reads_is_malformed_json(api, db):
    for levels in (1_025, 5_000):
        reply = await api.request("POST", "/v1/note", data=nested(levels).encode(), headers=JSON)
        assert reply.status == 400 and reply.body["code"] == "invalid_json"
    assert await stored_docs(db) == []


async def test_deep_and_huge_patch_put_and_verify_bodies_are_422(api, db):
    created = await api.request(
        "POST", "/v1/user", json={"email": "a@example.com", "name": "A", "password": "12345678"}
    )
    assert created.status == 201
    path = f"/v1/user/{created.body['id']}"
    deep = ('{"address": ' + nested(1_000, '"x"') + "}").encode()
    patched = await api.request("PATCH", path, data=deep, headers=MERGE_PATCH)
    assert patched.status == 422 and patched.body["code"] == "nested_too_deep"
    huge = b'{"age": 18446744073709551616}'
    patched = await api.request("PATCH", path, data=huge, headers={**MERGE_PATCH, "If-Match": created.etag})
    assert patched.status == 422 and patched.body["code"] == "number_out_of_range"
    put = b'{"email": "a@example.com", "name": "A", "age": 1e300}'
    replaced = await api.request("PUT", path, data=put, headers={**JSON, "If-Match": created.etag})
    assert replaced.status == 422 and replaced.body["code"] == "number_out_of_range"
    verify = await api.request("POST", f"{path}/verify", data=deep, headers=JSON)
    assert verify.status == 422 and verify.body["code"] == "nested_too_deep"
    (stored,) = await stored_docs(db)
    assert stored["_rev"] == created.etag[1:-1]


def test_check_limits_names_every_number_and_the_first_deep_path():
    check_limits({"a": [MAX_SAFE, -MAX_SAFE, 1.5, True], "b": {"c": None}})
    with pytest.raises(NumberOutOfRange) as raised:
        check_limits({"a": [1, 2**53], "b": {"c": -1e300}, "d": float("nan")})
    assert [v.path for v in raised.value.violations] == ["/a/1", "/b/c", "/d"]
    value: object = 1
    for _ in range(MAX_NESTING):
        value = [value]
    check_limits(value)
    with pytest.raises(NestedTooDeep) as raised:
        check_limits([value])
    assert raised.value.violations[0].path.endswith("/...")


# -- finding 4: bcrypt backpressure ---------------------------------------------------


async def test_a_verify_flood_gets_busy_answers_within_the_bound_and_health_stays_up(config, tmp_path, capsys):
    """300 concurrent verifies at cost 12 behind a queue of 16: some are answered 503 busy
    with Retry-After at once or after --bcrypt-wait; none waits for the whole flood, and
    liveness answers throughout. Figures are printed (-s), not asserted, but for a bound
    far above --bcrypt-wait plus one hash (what an unbounded queue took: ~30 s)."""
    models = tmp_path / "flood.yaml"
    models.write_text('types: {account: {version: "1.0", properties: {password: {type: string, protection: bcrypt}}}}')
    wait = 2.0
    flood = replace(config, models_path=str(models), bcrypt_queue=16, bcrypt_wait=wait)
    async with (
        running_app(flood) as (base, ctx),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        async with http.post(f"{base}/v1/account", json={"password": "p4ss-w0rd"}) as created:
            assert created.status == 201
            path = f"{base}/v1/account/{(await created.json())['id']}/verify"
        answers: list[tuple[int, str | None, float]] = []
        health: list[float] = []
        done = asyncio.Event()

        async def verify(i: int) -> None:
            start = time.monotonic()
            async with http.post(path, json={"password": "p4ss-w0rd" if i % 2 else "wrong-one"}) as reply:
                body = await reply.json()
                assert reply.status in (200, 503), body
                if reply.status == 503:
                    assert body["code"] == "busy" and int(reply.headers["Retry-After"]) >= 1
                answers.append((reply.status, body.get("code"), time.monotonic() - start))

        async def liveness() -> None:
            while not done.is_set():
                start = time.monotonic()
                async with http.get(f"{base}/_health") as reply:
                    assert reply.status == 200
                health.append(time.monotonic() - start)
                await asyncio.sleep(0.05)

        watcher = asyncio.ensure_future(liveness())
        await asyncio.gather(*(verify(i) for i in range(300)))
        done.set()
        await watcher
        async with http.get(f"{base}/_metrics") as reply:
            metrics = await reply.text()
    busy = [a for a in answers if a[0] == 503]
    matched = [a for a in answers if a[0] == 200]
    assert busy and matched and len(answers) == 300
    slowest = max(a[2] for a in answers)
    assert slowest < wait + 20  # documented: --bcrypt-wait plus one hash; generous for a loaded machine
    assert health
    assert 'data_service_verify_attempts_total{type="account"}' in metrics
    assert f"data_service_bcrypt_busy_total {float(ctx.store.hasher.refused)}" in metrics
    with capsys.disabled():
        print(
            f"\nflood: {len(matched)} answered, {len(busy)} busy; slowest {slowest:.2f} s; "
            f"health n={len(health)} median {sorted(health)[len(health) // 2] * 1000:.1f} ms "
            f"max {max(health) * 1000:.1f} ms"
        )
