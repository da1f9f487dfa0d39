"""Benchmark the data-service sidecar against direct CouchDB, in one run.

For each workload (get, query, create, bulk, update) and each concurrency, the same number
of requests goes first straight to CouchDB, then through the sidecar (a real
``data-service serve`` subprocess), against the same fresh database. Reports
requests/s, p50 and p99 latency for both, the sidecar/direct ratios, and the
sidecar's memory (VmRSS, VmHWM) after each workload.

CouchDB is ``--couchdb-url`` (admin credentials in the URL), else
``$COUCHDB_URL``, else a private in-memory pouchdb-server started for the run
(``scripts/devcouch.py``). The database ``bench_<random>`` is created for the
run and deleted at the end, also on failure or Ctrl-C.

This script only measures: it asserts nothing about speed. It exits 1 when
more than 1% of the requests of any measurement failed (non-2xx or no answer).
The scale benchmark is ``python -m bench.scale`` (bench/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .couch import ROOT, devcouch, fresh_database, log, open_couchdb
from .measure import interrupt, loadavg, machine_info, run
from .options import add_couchdb, choices, counts, non_negative, positive
from .report import markdown
from .runs import C1_CAP, cache_measurements, run_workloads
from .sidecar import Sidecar, prepare_sidecar
from .workloads import BODY, GET_DOCS

DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
WORKLOADS = ("get", "get-nocache", "query", "create", "bulk", "update")
ERROR_LIMIT = 0.01  # more failed requests than this fraction fails the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_couchdb(parser, os.environ.get("COUCHDB_URL"))
    parser.add_argument(
        "--requests",
        type=positive,
        default=2000,
        help=f"measured requests per workload, target and concurrency (default 2000; "
        f"at concurrency 1 at most {C1_CAP})",
    )
    parser.add_argument(
        "--concurrency", type=counts, default=[1, 50], help="comma-separated concurrencies (default 1,50)"
    )
    parser.add_argument(
        "--warmup", type=positive, default=50, help="unmeasured requests before each measurement (default 50)"
    )
    parser.add_argument(
        "--preheat",
        type=non_negative,
        default=300,
        help="unmeasured requests per workload and target once at the start, to warm up "
        "CouchDB and the sidecar (default 300; 0 skips)",
    )
    parser.add_argument(
        "--workloads",
        type=choices(WORKLOADS, "workloads"),
        default=list(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--port", type=int, help="port for the sidecar (default: a free one)")
    parser.add_argument(
        "--workers", type=non_negative, default=0, help="the sidecar's --workers (default 0: its default, one per CPU)"
    )
    parser.add_argument(
        "--cache-size", type=non_negative, default=64, help="the sidecar's --cache-size in MB (default 64)"
    )
    parser.add_argument(
        "--warm-interval",
        type=float,
        default=0.0,
        help="the sidecar's --warm-interval (default 0: no index warmer; every measurement starts with the "
        "indexes current, and the warmer would index direct writes inside the sidecar's measurements)",
    )
    parser.add_argument(
        "--couchdb-transport",
        help="the sidecar's --couchdb-transport, e.g. httptools (default: the sidecar's default)",
    )
    parser.add_argument(
        "--staleness",
        type=non_negative,
        default=20,
        help="writes made straight in CouchDB to time until the sidecar's cache answers them (default 20; 0 skips)",
    )
    parser.add_argument(
        "--fill-cache",
        type=non_negative,
        default=0,
        help="after the workloads, fill the cache with this many MB of documents and read RSS (default 0: skip)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the JSON report (default {DEFAULT_JSON.relative_to(ROOT)})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM takes the Ctrl-C path, so everything started here is stopped and the database deleted.
    signal.signal(signal.SIGTERM, interrupt)
    started_at = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        couch, where = open_couchdb(args, stack)
        log(f"bench: CouchDB {couch.url} ({where})")
        machine = machine_info(couch)
        if machine["server"]["status"] != 200:
            log(f"bench: GET / on CouchDB answered {machine['server']['status']}")
            return 2
        database = fresh_database(couch, stack)
        if database is None:
            return 2
        steps: list[str] = []  # what prepare_sidecar ran
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sidecar-")))
        try:
            extra = prepare_sidecar(couch, database, workdir, steps)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"bench: {exc}")
            return 2
        extra += [
            f"--workers={args.workers}",
            f"--cache-size={args.cache_size}",
            f"--warm-interval={args.warm_interval:g}",
        ]
        if args.couchdb_transport:
            extra.append(f"--couchdb-transport={args.couchdb_transport}")
        sidecar = Sidecar(couch, database, args.port or devcouch.free_port(), workdir / "sidecar.log", extra)
        sidecar.stop_with(stack)
        try:
            sidecar.start()
        except RuntimeError as exc:
            log(f"bench: {exc}")
            return 2
        assert sidecar.proc is not None
        log(f"bench: sidecar {sidecar.url} (pid {sidecar.proc.pid}), database {database}")
        memory_at_start = sidecar.memory()
        workers = len(sidecar.pids())
        try:
            results = run(run_workloads(args, couch, database, sidecar))
            cache = run(cache_measurements(args, couch, database, sidecar))
        except KeyboardInterrupt:
            log("bench: interrupted; cleaning up")
            return 130
        except RuntimeError as exc:
            log(f"bench: {exc}\n--- sidecar log ---\n{sidecar.log_tail()}")
            return 2
        if sidecar.proc.poll() is not None:
            log(f"bench: the sidecar died during the run ({sidecar.proc.returncode}):\n{sidecar.log_tail()}")
            return 2

    report = {
        "timestamp": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 1),
        "loadavg_at_end": loadavg(),
        "machine": machine,
        "config": {
            "couchdb": machine["server"]["kind"]
            + (
                " (started by --couchdb-script)"
                if args.couchdb_script
                else " (private, in memory)"
                if couch.pid
                else ""
            ),
            "requests": args.requests,
            "c1_cap": C1_CAP,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "preheat": args.preheat,
            "workloads": args.workloads,
            "get_docs": GET_DOCS,
            "body_chars": len(BODY),
            "workers": workers,
        },
        "sidecar_command": [Path(part).name if i == 0 else part for i, part in enumerate(sidecar.command)],
        "sidecar_preparation": [f"data-service {step}" for step in steps],
        "sidecar_memory_at_start": memory_at_start,
        "results": results,
        "cache": cache,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    log(f"bench: {report['duration_s']} s; JSON report in {args.json}")
    return failures(results)


def failures(results: list[dict]) -> int:
    """1 (and which, on stderr) when more than ``ERROR_LIMIT`` of any measurement's requests failed."""
    failed = [
        f"{row['workload']} c={row['concurrency']} {target}: {row[target]['errors']}/{row['requests']} "
        f"failed {row[target]['statuses']}"
        for row in results
        for target in ("direct", "sidecar")
        if row[target]["errors"] > ERROR_LIMIT * row["requests"]
    ]
    if failed:
        log("bench: FAILED: more than 1% of the requests failed in:\n  " + "\n  ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("bench: interrupted")
        sys.exit(130)
