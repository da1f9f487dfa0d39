"""Shared fixtures. Every test runs against a real CouchDB-API server: the one in
``$COUCHDB_URL`` (admin credentials in the URL) or else a pouchdb-server this
session starts in memory on a free loopback port."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from support import ROOT, database_with, devcouch, running_sidecar, spec_api
from transports import KINDS, Kind

from data_service.config import Config
from data_service.couchdb import AsyncTransport, CouchDB
from data_service.couchdb.client import DEFAULT_TRANSPORT, split_credentials
from data_service.keys import KeysDir

# The transport every test's client and sidecar use (COUCHDB_TRANSPORT=aiohttp make test);
# the transport conformance tests run each one regardless.
TRANSPORT = os.environ.get("COUCHDB_TRANSPORT", DEFAULT_TRANSPORT)
UNIT, SERVER = Path(__file__).parent / "unit", Path(__file__).parent / "server"
# What each environment-bound marker needs (see pyproject.toml).
NEEDS = {
    "cluster": ("COUCHDB_SCRIPT", "COUCHDB_CLUSTER_DIR"),
    "kill": ("COUCHDB_SCRIPT",),
    "browser": ("CHROMIUM",),
    "own_node": ("COUCHDB_SCRIPT",),
}


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test of tests/server/ ``couchdb`` (``pytest -m "not couchdb"`` is the fast
    inner loop), and deselect, not skip, the tests whose environment this run lacks: a plain
    ``make test`` has no CouchDB script or cluster, and a skip would read as a test that
    could not pass. ``make test-couchdb`` / ``make test-cluster`` set the variables; the
    ``root`` tests (Secret volumes, files of other users) need root; ``single_node`` tests
    (CouchDB's answers as one copy of each shard gives them) are left out of a cluster run."""
    unmet = {marker for marker, names in NEEDS.items() if not all(os.environ.get(n) for n in names)}
    if os.geteuid() != 0:
        unmet.add("root")
    if os.environ.get("COUCHDB_CLUSTER_DIR"):
        unmet.add("single_node")
    keep, drop = [], []
    for item in items:
        if _needs_server(item):
            item.add_marker(pytest.mark.couchdb)
        (drop if any(item.get_closest_marker(m) for m in unmet) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _needs_server(item) -> bool:
    """The folder is the tier: tests/server/ needs a server, tests/unit/ never does (a test
    there asking for ``couchdb_url``, directly or through a fixture, stops the run)."""
    uses_server = "couchdb_url" in getattr(item, "fixturenames", ())
    if uses_server and item.path.is_relative_to(UNIT):
        raise pytest.UsageError(f"{item.nodeid} needs a server (couchdb_url): it belongs in tests/server/")
    return uses_server or item.path.is_relative_to(SERVER)


@pytest.fixture(scope="session")
def couchdb_url(tmp_path_factory) -> str:
    """Admin URL of the server under test (credentials included)."""
    url = os.environ.get("COUCHDB_URL")
    if url:
        yield url.rstrip("/")
        return
    directory = tmp_path_factory.mktemp("devcouch")
    server = devcouch.start(directory, memory=True)
    yield server.admin_url
    devcouch.stop(directory)


@pytest.fixture
async def couch(couchdb_url):
    async with CouchDB(couchdb_url, transport_kind=TRANSPORT) as client:
        yield client


@pytest.fixture
async def db(couch, request):
    """A new database, dropped afterwards; for a test marked ``one_copy``, with one copy per
    shard range (``support.single_copy_database``)."""
    options = {"n": 1} if request.node.get_closest_marker("one_copy") else {}
    async with database_with(couch, **options) as database:
        yield database


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory) -> str:
    """A keys directory shared by the tests that never rotate keys."""
    directory = tmp_path_factory.mktemp("keys")
    KeysDir(directory).create()
    return str(directory)


@pytest.fixture
def config(couchdb_url, db, keys_dir) -> Config:
    """Sidecar configuration for the test database, credentials split off the URL."""
    url, auth = split_credentials(couchdb_url)
    user, password = auth or (None, None)
    return Config(
        couchdb_url=url,
        database=db.name,
        couchdb_user=user,
        couchdb_password=password,
        connect_timeout=2,
        request_timeout=5,
        couchdb_transport=TRANSPORT,
        models_path=str(ROOT / "models" / "sample.yaml"),
        keys_dir=keys_dir,
    )


@pytest.fixture
async def sidecar(config):
    async with running_sidecar(config) as base:
        yield base


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def api(sidecar, http):
    """A spec-checking client of the running sidecar."""
    return await spec_api(http, sidecar)


@pytest.fixture(params=KINDS, ids=lambda kind: kind.name)
def kind(request) -> Kind:
    """Each transport under test (tests/transports.py: KINDS)."""
    return request.param


@pytest.fixture(params=[kind for kind in KINDS if kind.network], ids=lambda kind: kind.name)
def network_kind(request) -> Kind:
    """Each transport that opens connections."""
    return request.param


@pytest.fixture
async def opened():
    """``opened(kind, url, **options)``: a transport to ``url`` (credentials split off), closed afterwards."""
    made: list[AsyncTransport] = []

    def make(kind: Kind, url: str, **options) -> AsyncTransport:
        base, auth = split_credentials(url)
        transport = kind.make(base, auth=auth, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.aclose()
