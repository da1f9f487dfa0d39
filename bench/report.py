"""The Markdown report of ``python -m bench``."""

from __future__ import annotations

from .measure import machine_line
from .runs import requests_at
from .workloads import BULK


def bulk_lines(results: list[dict]) -> list[str]:
    """Documents per second of the bulk workload against single creates at the same concurrency."""
    create = {row["concurrency"]: row for row in results if row["workload"] == "create"}
    lines = []
    for row in results:
        single = create.get(row["concurrency"])
        if row["workload"] != "bulk" or single is None:
            continue
        docs = {target: row[target]["rps"] * BULK for target in ("direct", "sidecar")}
        lines.append(
            f"- bulk c={row['concurrency']}: {BULK} notes per request; sidecar {docs['sidecar']:.0f} docs/s = "
            f"{docs['sidecar'] / single['sidecar']['rps']:.1f}x its single create ({single['sidecar']['rps']:.0f}/s); "
            f"direct _bulk_docs {docs['direct']:.0f} docs/s."
        )
    return ["", *lines] if lines else []


def markdown(report: dict) -> str:
    config = report["config"]
    out = [
        f"Machine: {machine_line(report['machine'])}",
        f"CouchDB: {config['couchdb']}; requests per measurement: "
        + ", ".join(f"c={c}: {requests_at(c, config['requests'])}" for c in config["concurrency"])
        + f" (each after {report['config']['warmup']} warm-up requests; {report['config']['preheat']} "
        "preheat requests per workload and target at the start)",
        "",
        "| workload | c | requests | direct req/s | sidecar req/s | ratio req/s | direct p50 ms | "
        "sidecar p50 ms | ratio p50 | direct p99 ms | sidecar p99 ms | errors d/s | sidecar RSS / peak MiB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in report["results"]:
        d, s, mem = row["direct"], row["sidecar"], row["sidecar_memory"]
        out.append(
            f"| {row['workload']} | {row['concurrency']} | {row['requests']} | {d['rps']:.0f} | {s['rps']:.0f} | "
            f"{row['ratio']['rps']:.2f} | {d['p50_ms']:.2f} | {s['p50_ms']:.2f} | {row['ratio']['p50']:.2f} | "
            f"{d['p99_ms']:.2f} | {s['p99_ms']:.2f} | {d['errors']}/{s['errors']} | "
            f"{mem['rss_kib'] / 1024:.1f} / {mem['hwm_kib'] / 1024:.1f} |"
        )
    out += bulk_lines(report["results"])
    base = report["sidecar_memory_at_start"]
    start, end = report["machine"]["loadavg_at_start"], report["loadavg_at_end"]
    out += [
        "",
        f"Load average (1/5/15 min) at start {start}, at end {end}: the client, the sidecar and "
        "CouchDB share these CPUs; anything else running skews the numbers.",
        f"Sidecar: {config['workers']} worker(s); memory at start (after the readiness check, of the "
        f"largest worker): RSS {base['rss_kib'] / 1024:.1f} MiB, peak {base['hwm_kib'] / 1024:.1f} MiB.",
        "",
        "CPU ms per request (client / sidecar / couchdb; couchdb only for a server this run started):",
        "",
        "| workload | c | direct | sidecar |",
        "|---|--:|--|--|",
    ]

    def cpu(summary: dict) -> str:
        return " / ".join("-" if v is None else f"{v:.2f}" for v in summary["cpu_ms_per_request"].values())

    for row in report["results"]:
        out.append(f"| {row['workload']} | {row['concurrency']} | {cpu(row['direct'])} | {cpu(row['sidecar'])} |")
    cache = report.get("cache") or {}
    if stale := cache.get("staleness"):
        out += [
            "",
            f"Staleness (a write straight to CouchDB until the sidecar's cache answers it, {stale['samples']} "
            f"samples): p50 {stale['p50_ms']} ms, max {stale['max_ms']} ms.",
        ]
    if full := cache.get("cache_full"):
        out += [
            "",
            f"Cache full ({full['documents']} notes of 10,000 characters read once): {full.get('entries', 0):.0f} "
            f"entries in all, {full.get('bytes', 0) / 1048576:.1f} MiB in the fullest worker; sidecar RSS "
            f"{full['rss_kib'] / 1024:.1f} MiB (peak {full['hwm_kib'] / 1024:.1f} MiB, largest worker).",
        ]
    return "\n".join(out)
