"""The scale benchmark: how the sidecar's costs grow with the database.

One database is filled through the sidecar's ``POST /v1/item/_bulk`` (a type with three
declared indexes: bench/scale_models.yaml), ``--concurrency`` bulks of ``--bulk`` at a
time, to each of ``--sizes`` documents in turn; a second database is filled beside it
through CouchDB's own ``_bulk_docs`` with the same documents (the sidecar's envelope
copied). At each size:

- fill rate, sidecar against direct ``_bulk_docs`` (the sidecar's index warmer on, as
  ``serve`` runs by default);
- the first query after the fill (an equality page through the sidecar; direct: the same
  view), and the time until every index is current;
- at one connection, sidecar (``Cache-Control: no-cache``: past the read cache) against
  direct on the same database: GET by id, an equality page, a between page, the listing's
  page 20 deep (p50/p99);
- ``data-service verify`` docs/s;
- the sidecar's RSS (its largest worker), sampled every second.

After the last size: ``data-service reencrypt`` after rotating every key, then
``data-service migrate`` to bench/scale_models_v2.yaml, docs/s each against the fill rate.
``--compare-warmer N`` first fills N documents into a fresh database for each of
``--compare-intervals`` (default: the warmer off, then at ``--warm-interval``), for what
the warmer costs the fill and saves the first query.

Results: Markdown on stdout and in OUT/scale.md, everything in OUT/scale.json (rewritten
after each size: an interrupted run keeps what it measured), charts as OUT/scale-*.svg
when matplotlib is installed (``pip install -e '.[bench]'``). Progress (with rate and
time left) on stderr. Measures only. Exit status: 0; 1 when a fill had failed requests;
2 when setting up failed; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from data_service.design import design_docs, query_designs
from data_service.keys import PURPOSES, KeysDir
from data_service.models import load_models

from .couch import ROOT, Couch, devcouch, fresh_database, log, open_couchdb
from .measure import interrupt, loadavg, machine_info, run, session_for
from .options import add_couchdb, counts, positive
from .scale_jobs import RssSampler, job
from .scale_report import charts, markdown
from .scale_steps import Target, fill, first_query, read_latencies, settle
from .sidecar import Sidecar, couchdb_flags, data_service

MODELS = ROOT / "bench" / "scale_models.yaml"
MODELS_V2 = ROOT / "bench" / "scale_models_v2.yaml"
QUERIED = query_designs(load_models(MODELS))  # the indexes callers' queries read (and the warmer warms)
VIEWS = [name for name, doc in design_docs(load_models(MODELS)).items() if doc.get("views")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_couchdb(parser, os.environ.get("COUCHDB_URL"))
    parser.add_argument(
        "--sizes",
        type=counts,
        default=[10_000, 100_000, 1_000_000],
        help="database sizes, ascending (default 10000,100000,1000000)",
    )
    parser.add_argument("--bulk", type=positive, default=500, help="documents per bulk request (default 500)")
    parser.add_argument("--concurrency", type=positive, default=4, help="bulk requests at once (default 4)")
    parser.add_argument(
        "--requests",
        type=positive,
        default=200,
        help="measured requests per read workload and side at each size (default 200)",
    )
    parser.add_argument("--warm-interval", type=float, default=5.0, help="the sidecar's --warm-interval (default 5)")
    parser.add_argument(
        "--compare-warmer",
        type=int,
        default=0,
        metavar="N",
        help="first fill N documents into a fresh database per --compare-intervals (default 0: skip)",
    )
    parser.add_argument(
        "--compare-intervals",
        type=intervals,
        help="the sidecar's --warm-interval for each --compare-warmer fill (default: 0 and --warm-interval)",
    )
    parser.add_argument("--workers", type=int, default=0, help="the sidecar's --workers (default 0: one per CPU)")
    parser.add_argument("--cache-size", type=int, default=64, help="the sidecar's --cache-size in MB (default 64)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the results go")
    args = parser.parse_args(argv)
    if args.sizes != sorted(args.sizes):
        parser.error("--sizes: ascending")
    args.compare_intervals = args.compare_intervals or [0.0, args.warm_interval]
    return args


def intervals(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated seconds, 0 or more (0: no warmer)")
    return values


class Run:
    """The run's CouchDB, keys and working directory; databases and sidecars it starts are
    stopped and deleted by ``stack``."""

    def __init__(self, args: argparse.Namespace, couch: Couch, stack: contextlib.ExitStack, workdir: Path) -> None:
        self.args, self.couch, self.stack, self.workdir = args, couch, stack, workdir
        self.keys = workdir / "keys"
        self.checked(data_service(couch, "keys", "create", f"--keys-dir={self.keys}"))

    @staticmethod
    def checked(done: subprocess.CompletedProcess) -> None:
        if done.returncode != 0:
            raise RuntimeError(f"{done.args[1]} failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")

    def database(self, prefix: str, stack: contextlib.ExitStack | None = None) -> str:
        """A fresh database with the installer's design docs, security and guard."""
        name = fresh_database(self.couch, stack or self.stack, prefix)
        if name is None:
            raise RuntimeError("CouchDB refused to create a database")
        self.checked(data_service(self.couch, "install", f"--keys-dir={self.keys}", *self.flags(name)))
        return name

    def flags(self, database: str, models: Path | None = MODELS) -> list[str]:
        return couchdb_flags(self.couch, database, models)

    def sidecar(self, database: str, warm_interval: float, stack: contextlib.ExitStack | None = None) -> Sidecar:
        extra = [
            f"--keys-dir={self.keys}",
            f"--workers={self.args.workers}",
            f"--cache-size={self.args.cache_size}",
            f"--warm-interval={warm_interval:g}",
        ]
        sidecar = Sidecar(self.couch, database, devcouch.free_port(), self.workdir / f"{database}.log", extra, MODELS)
        sidecar.stop_with(stack or self.stack)
        sidecar.start(seconds=120)
        return sidecar


def compare_warmer(scale: Run, size: int) -> list[dict]:
    """``size`` documents into a fresh database for each of ``--compare-intervals``."""
    rows = []
    for interval in scale.args.compare_intervals:
        with contextlib.ExitStack() as stack:
            target = Target(scale.couch, scale.database("scale_warmer", stack))
            target.sidecar = scale.sidecar(target.database, interval, stack)
            log(f"scale: warmer {'off' if not interval else f'every {interval:g} s'}: {size} documents")
            filled = run(fill(target, size, scale.args.bulk, scale.args.concurrency))
            rows.append({"warm_interval": interval, "fill": filled, **run(first_query(target, QUERIED))})
    return rows


async def template(target: Target) -> dict[str, Any]:
    """A document as the sidecar stored it, without its id and revision."""
    async with session_for(1, {"Authorization": target.couch.authorization}) as direct:
        async with direct.get(f"{target.db_url}/{target.ids[0]}") as resp:
            return {k: v for k, v in orjson.loads(await resp.read()).items() if not k.startswith("_")}


def at_size(scale: Run, size: int, side: Target, direct: Target, rss: RssSampler) -> dict[str, Any]:
    args = scale.args
    log(f"scale: {size} documents")
    row: dict[str, Any] = {"documents": size, "fill": run(fill(side, size, args.bulk, args.concurrency))}
    row["after_fill"] = run(first_query(side, QUERIED))
    run(settle(side, VIEWS))  # the sweeper's views too: nothing indexes in the background from here on
    direct.template = direct.template or run(template(side))
    row["direct_fill"] = run(fill(direct, size, args.bulk, args.concurrency))
    row["direct_after_fill"] = run(first_query(direct, QUERIED))
    run(settle(direct, VIEWS))
    row["reads"] = run(read_latencies(side, args.requests))
    row["verify"] = job(scale.couch, "verify", f"--keys-dir={scale.keys}", *scale.flags(side.database, None))
    row["sidecar_memory"] = rss.take()
    return row


def jobs(scale: Run, side: Target) -> dict[str, Any]:
    """reencrypt after a rotation of every key, then migrate to version 2."""
    keys = KeysDir(scale.keys)
    for purpose in PURPOSES:
        keys.promote(purpose, keys.rotate(purpose))
    return {
        "reencrypt": job(scale.couch, "reencrypt", f"--keys-dir={scale.keys}", *scale.flags(side.database)),
        "migrate": job(scale.couch, "migrate", f"--keys-dir={scale.keys}", *scale.flags(side.database, MODELS_V2)),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)  # the Ctrl-C path: everything started is stopped, databases deleted
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        couch, where = open_couchdb(args, stack)
        log(f"scale: CouchDB {couch.url} ({where})")
        report: dict[str, Any] = {"machine": machine_info(couch), "config": {**vars(args), "out": str(args.out)}}
        report["config"]["couchdb"] = where
        args.out.mkdir(parents=True, exist_ok=True)

        def save() -> None:
            report["loadavg_at_end"], report["duration_s"] = loadavg(), round(time.monotonic() - t0, 1)
            (args.out / "scale.json").write_text(json.dumps(report, indent=2, default=str) + "\n")

        try:
            scale = Run(args, couch, stack, Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-"))))
            if args.compare_warmer:
                report["warmer"] = compare_warmer(scale, args.compare_warmer)
                save()
            side = Target(couch, scale.database("scale"))
            direct = Target(couch, scale.database("scale_direct"))
            side.sidecar = scale.sidecar(side.database, args.warm_interval)
            rss = RssSampler(side.sidecar).start()
            stack.callback(rss.stop)
            report["sidecar_memory_at_start"] = rss.take()
            report["sizes"] = []
            for size in args.sizes:
                report["sizes"].append(at_size(scale, size, side, direct, rss))
                save()
            report["jobs"] = jobs(scale, side)
            save()
        except KeyboardInterrupt:
            log("scale: interrupted; cleaning up (scale.json holds what was measured)")
            return 130
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"scale: {exc}")
            return 2
    text = markdown(report)
    (args.out / "scale.md").write_text(text + "\n")
    print(text)
    log(charts(report, args.out))
    fills = [row[key] for row in report["sizes"] for key in ("fill", "direct_fill")]
    return 1 if any(f["errors"] for f in fills) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("scale: interrupted")
        sys.exit(130)
