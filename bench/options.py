"""Command-line value types the benchmarks share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def counts(text: str) -> list[int]:
    """Comma-separated positive integers (underscores allowed: 1_000_000)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated positive integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated positive integers")
    return values


def choices(allowed: tuple[str, ...], what: str) -> Callable[[str], list[str]]:
    """Comma-separated names out of ``allowed``."""

    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        if not values or any(v not in allowed for v in values):
            raise argparse.ArgumentTypeError(f"{what} are {', '.join(allowed)}")
        return values

    return parse


def add_couchdb(parser: argparse.ArgumentParser, default_url: str | None) -> None:
    """Which CouchDB a run uses (``couch.open_couchdb``)."""
    parser.add_argument(
        "--couchdb-url",
        default=default_url,
        help="CouchDB with admin credentials, http://user:password@host:port "
        "(default: $COUCHDB_URL, else a private in-memory pouchdb-server)",
    )
    parser.add_argument(
        "--couchdb-script",
        type=Path,
        help="start a single-node CouchDB with this script (../shared/couchdb/couchdb: start/url/stop "
        "--dir=DIR) in a temporary directory, and stop and wipe it at the end",
    )
