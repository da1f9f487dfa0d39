"""``--couchdb-transport``: the flag picks the transport; an unknown one stops startup."""

from __future__ import annotations

import subprocess
import sys

import pytest
from docopt import docopt

from data_service import cli
from data_service.config import Config
from data_service.couchdb import TRANSPORTS
from data_service.server import connect


@pytest.mark.parametrize("name", list(TRANSPORTS))
def test_the_flag_picks_the_transport(name, keys_dir):
    args = docopt(cli.__doc__, argv=["serve", f"--keys-dir={keys_dir}", f"--couchdb-transport={name}"])
    config = Config.from_args(args, env={})
    assert type(connect(config).transport) is TRANSPORTS[name]


def test_an_unknown_transport_stops_startup(keys_dir):
    result = subprocess.run(
        [sys.executable, "-m", "data_service", "serve", f"--keys-dir={keys_dir}", "--couchdb-transport=curl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith("--couchdb-transport: one of aiohttp, httptools")
