"""API tokens on a running sidecar: liveness and the routes opened without a token, a foreign
Host answered 421, SIGHUP reloading the token file (in every worker). The pure rules are
tests/unit/test_callers.py's."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

from support import running_app, serving
from support.callers import ONE, TWO, token_file

PROBLEM = "application/problem+json"


THREE = "token-three-00112233445566"


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def status_of(http, url: str, headers: dict | None = None) -> int:
    async with http.get(url, headers=headers or {}) as resp:
        await resp.read()
        return resp.status


async def test_tokens_liveness_and_opened_routes(config, http, tmp_path):
    guarded = replace(config, api_token_file=str(token_file(tmp_path, ONE, TWO)))
    async with running_app(guarded) as (base, _):
        for headers in ({}, auth("wrong-token-0123456789"), {"Authorization": f"Basic {ONE}"}):
            async with http.get(f"{base}/v1/_types", headers=headers) as resp:
                body = await resp.json(content_type=None)
            assert resp.status == 401 and resp.content_type == PROBLEM, headers
            assert body["code"] == "unauthorized" and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert await status_of(http, f"{base}/v1/_types", auth(ONE)) == 200
        assert await status_of(http, f"{base}/v1/_types", auth(TWO)) == 200
        assert await status_of(http, f"{base}/nowhere", auth(ONE)) == 404
        assert await status_of(http, f"{base}/nowhere") == 401  # unknown paths too: nothing is told without one
        assert await status_of(http, f"{base}/_health") == 200  # liveness is open
        assert await status_of(http, f"{base}/_health?quick=false") == 401
        assert await status_of(http, f"{base}/_metrics") == 401
        assert await status_of(http, f"{base}/_metrics", auth(ONE)) == 200
        # a refused POST with a body: answered without reading it, and the connection ends
        async with http.post(f"{base}/v1/user", data=b"{}", headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 401 and resp.headers["Connection"] == "close"
    opened = replace(guarded, open_metrics=True, open_readiness=True)
    async with running_app(opened) as (base, _):
        assert await status_of(http, f"{base}/_metrics") == 200
        assert await status_of(http, f"{base}/_health?quick=false") in (200, 503)  # readiness itself answers
        assert await status_of(http, f"{base}/v1/_types") == 401


async def test_a_foreign_host_is_421(config, http):
    async with running_app(config) as (base, _):
        port = base.rsplit(":", 1)[1]
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
            async with http.get(f"{base}/_health", headers={"Host": host}) as resp:
                body = await resp.json(content_type=None)
            assert resp.status == 421 and resp.content_type == PROBLEM and body["code"] == "host_not_allowed", host
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
            assert await status_of(http, f"{base}/v1/_types", {"Host": host}) == 200, host
    async with running_app(replace(config, allowed_hosts=("app.internal",))) as (base, _):
        assert await status_of(http, f"{base}/v1/_types", {"Host": "app.internal:8080"}) == 200
        assert await status_of(http, f"{base}/v1/_types", {"Host": "other.internal"}) == 421


async def test_sighup_reloads_the_tokens(config, http, tmp_path):
    path = token_file(tmp_path, ONE, TWO)
    async with serving(config, tmp_path, f"--api-token-file={path}") as served:
        base = served.base
        assert await status_of(http, f"{base}/v1/_types", auth(ONE)) == 200
        assert await status_of(http, f"{base}/v1/_types", auth(THREE)) == 401
        path.write_text(f"{TWO}\n{THREE}\n")  # rotate: THREE added, ONE removed
        served.process.send_signal(signal.SIGHUP)
        await eventually(lambda: status_of(http, f"{base}/v1/_types", auth(THREE)), 200)
        assert await status_of(http, f"{base}/v1/_types", auth(ONE)) == 401
        assert await status_of(http, f"{base}/v1/_types", auth(TWO)) == 200
        path.write_text("not a token\n")  # a broken file keeps the tokens loaded before
        served.process.send_signal(signal.SIGHUP)
        await eventually(
            lambda: asyncio.sleep(0, any("not reloaded" in line["message"] for line in served.log_lines())), True
        )
        assert await status_of(http, f"{base}/v1/_types", auth(THREE)) == 200
        os.unlink(path)
        served.process.send_signal(signal.SIGHUP)
        await eventually(
            lambda: asyncio.sleep(0, sum("not reloaded" in line["message"] for line in served.log_lines())), 2
        )
        assert await status_of(http, f"{base}/v1/_types", auth(TWO)) == 200
        assert served.process.returncode is None
    log = served.log_path.read_text()
    assert all(token not in log for token in (ONE, TWO, THREE))


async def eventually(probe, expected, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := await probe()) != expected:
        assert loop.time() < deadline, f"still {got!r}, not {expected!r}"
        await asyncio.sleep(0.1)


async def test_workers_pass_sighup_on(config, http, tmp_path):
    """With --workers the parent gets the signal: every worker reloads, nobody dies."""
    path = token_file(tmp_path, ONE)
    async with serving(config, tmp_path, f"--api-token-file={path}", "--workers=2") as served:
        path.write_text(f"{TWO}\n")
        served.process.send_signal(signal.SIGHUP)

        async def all_answers() -> list[int]:  # connections spread over both workers
            return sorted({await status_of(http, f"{served.base}/v1/_types", auth(TWO)) for _ in range(12)})

        await eventually(all_answers, [200])
        assert await status_of(http, f"{served.base}/v1/_types", auth(ONE)) == 401
        assert served.process.returncode is None
