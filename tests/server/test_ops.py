"""The ops listener (``serve --ops-listen``): liveness, readiness and metrics without a
token and for any Host (kubelet and Prometheus target the pod IP), nothing else; with
``--workers`` liveness speaks for every worker and one scrape shows them all; metrics
in the format the scraper asks for; probes and scrapes logged at debug, 4xx at info."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import aiohttp
from support import devcouch, install_design_docs, serving

TOKEN = "ops-test-token-0123456789abcdef"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


async def get(http, url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, dict, str]:
    async with http.get(url, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
        return resp.status, dict(resp.headers), await resp.text()


def samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name)]


async def test_the_ops_listener_serves_probes_and_metrics_only(config, db, tmp_path):
    await install_design_docs(db)
    ops = devcouch.free_port()
    flags = (f"--api-token-file={token_file(tmp_path)}", f"--ops-listen=127.0.0.1:{ops}", "--log-level=info")
    async with serving(config, tmp_path, *flags) as served, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{ops}"
        pod = {"Host": f"10.42.0.7:{ops}"}  # what kubelet and Prometheus send: the pod IP
        status, _, body = await get(http, f"{base}/_health", pod)
        assert status == 200 and '"status":"ok"' in body
        assert (await get(http, f"{base}/_health?quick=false", pod))[0] == 200
        status, headers, text = await get(http, f"{base}/_metrics", pod)
        assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert samples(text, "process_cpu_seconds_total") and samples(text, "process_resident_memory_bytes")
        assert "_created" not in text and "data_service_http_requests_total{" in text
        status, headers, text = await get(http, f"{base}/_metrics", {**pod, "Accept": OPENMETRICS})
        assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert text.endswith("# EOF\n") and "# TYPE data_service_http_requests counter" in text
        assert "_created" not in text
        for path in ("/v1/_types", "/v1/note", "/openapi.json", "/_metrics/database", "/"):
            status, headers, _ = await get(http, f"{base}{path}", {**pod, "Authorization": f"Bearer {TOKEN}"})
            assert status == 404 and headers["Content-Type"] == "application/problem+json", path
        # the data port keeps its rules: a token, and loopback Host names
        assert (await get(http, f"{served.base}/_metrics"))[0] == 401
        assert (await get(http, f"{served.base}/_health", pod))[0] == 421
        assert (await get(http, f"{served.base}/nowhere", {"Authorization": f"Bearer {TOKEN}"}))[0] == 404
    levels = {(line.get("route"), line.get("status")): line["level"] for line in served.log_lines() if "route" in line}
    assert ("/_health", 200) not in levels and ("/_metrics", 200) not in levels  # debug: not at --log-level=info
    assert levels[("unmatched", 404)] == "info" and levels[("/_metrics", 401)] == "info"
    assert levels[("/_health", 421)] == "info"


async def test_with_workers_every_worker_answers_and_one_scrape_shows_them_all(config, db, tmp_path):
    await install_design_docs(db)
    ops = devcouch.free_port()
    async with serving(config, tmp_path, "--workers=2", f"--ops-listen=127.0.0.1:{ops}") as served:
        base = f"http://127.0.0.1:{ops}"
        seen: set[int] = set()
        for _ in range(40):  # a new connection each time: the kernel spreads them over both workers
            async with aiohttp.ClientSession() as http:
                status, _, body = await get(http, f"{base}/_health")
            assert status == 200
            seen.add(int(body.split('"worker":')[1].split("}")[0]))
            if seen == {0, 1}:
                break
        assert seen == {0, 1}
        async with aiohttp.ClientSession() as http:
            await until_metrics_of_both(http, base)
            status, _, text = await get(http, f"{base}/_metrics", {"Accept": OPENMETRICS})
        assert status == 200 and text.endswith("# EOF\n")
        workers = {line.split('worker="')[1].split('"')[0] for line in samples(text, "process_cpu_seconds_total")}
        assert workers == {"0", "1"}

        # a stuck worker fails liveness, whichever worker the probe reaches
        stuck = worker_pids(served.process.pid)[-1]
        os.kill(stuck, signal.SIGSTOP)
        try:
            stalled = await until_liveness(base, 503)
            assert '"code":"worker_stalled"' in stalled and '"stalled":[' in stalled
        finally:
            os.kill(stuck, signal.SIGCONT)
        await until_liveness(base, 200)


async def until_metrics_of_both(http, base: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        text = (await get(http, f"{base}/_metrics"))[2]
        if 'worker="0"' in text and 'worker="1"' in text:
            return
        assert loop.time() < deadline, "both workers' metrics in one scrape"
        await asyncio.sleep(0.2)


async def until_liveness(base: str, wanted: int, within: float = 60) -> str:
    """Probe on new connections (one that reaches a stopped worker times out) until one
    answers ``wanted``; its body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with aiohttp.ClientSession() as http:
                status, _, body = await get(http, f"{base}/_health", timeout=1)
            if status == wanted:
                return body
        assert loop.time() < deadline, f"liveness never answered {wanted}"
        await asyncio.sleep(0.2)


def worker_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return sorted(int(pid) for pid in children)
