"""python -m history — the recorded-history test on a running 3-node CouchDB cluster.

Run from tests/ with the cluster the shared script started in $COUCHDB_CLUSTER_DIR and the
script in $COUCHDB_SCRIPT (`make history` starts and stops one: HISTORY_ARGS="--runs=3").
Prints per run: operations, acknowledged writes, faults injected, each violation count
with examples, the cross-sidecar staleness p50/p90/max; exits 1 if any run failed a check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from support import CouchScript

from .report import text
from .run import run_once
from .schedule import SCHEDULES


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m history", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="nofaults", help="fault schedule")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients run (default 60)")
    parser.add_argument("--runs", type=int, default=1, help="runs one after another (default 1)")
    parser.add_argument("--clients", type=int, default=8, help="clients, half through each sidecar (default 8)")
    parser.add_argument("--documents", type=int, default=20, help="documents written at once (default 20)")
    parser.add_argument("--rate", type=float, default=100.0, help="operations a second, all clients (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first run; each run adds 1 (default 1)")
    parser.add_argument("--examples", type=int, default=3, help="violations shown per check (default 3)")
    parser.add_argument("--out", type=Path, help="directory for the runs' histories and logs (default: a new one)")
    parser.add_argument("--keep-database", action="store_true", help="do not drop each run's database")
    return parser.parse_args(argv)


async def main(argv: list[str]) -> int:
    args = parse(argv)
    missing = [name for name in ("COUCHDB_SCRIPT", "COUCHDB_CLUSTER_DIR") if not os.environ.get(name)]
    if missing:
        print(
            f"history: set {' and '.join(missing)} (a running 3-node cluster; make history starts one)", file=sys.stderr
        )
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="history-"))
    script = CouchScript(os.environ["COUCHDB_CLUSTER_DIR"])
    failed = []
    for run in range(1, args.runs + 1):
        print(f"run {run}/{args.runs}: schedule {args.schedule}, {args.seconds:.0f} s …", file=sys.stderr, flush=True)
        outcome = await run_once(
            args.schedule,
            args.seconds,
            script,
            out / f"run{run}",
            seed=args.seed + run - 1,
            clients=args.clients,
            documents=args.documents,
            rate=args.rate,
            keep_database=args.keep_database,
        )
        print(f"== run {run}/{args.runs} ({outcome.workdir})\n{text(outcome.result, outcome.notes, args.examples)}\n")
        if outcome.result.failed:
            failed.append(run)
    print(
        f"{args.runs - len(failed)} of {args.runs} runs passed every check" + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
