"""Wire the parts together and serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from tornado.httpserver import HTTPServer

from .config import Config, ConfigError
from .couchdb import TLS, CouchDB, IdPool, Limits, Timeouts
from .keys import KeysDir, kek_from
from .models import Models, load_models
from .openapi import spec_for
from .protection import Protector
from .store import DocumentStore
from .web import Context, make_app

log = logging.getLogger("data_service")


def connect(config: Config) -> CouchDB:
    return CouchDB(
        config.couchdb_url,
        auth=config.couchdb_auth,
        timeouts=Timeouts(connect=config.connect_timeout, request=config.request_timeout),
        limits=Limits(max_connections=config.max_connections),
        tls=TLS(ca_file=config.ca_file, verify=config.verify_tls),
    )


def protector(config: Config) -> Protector:
    """The keysets of ``--keys-dir``; KeysetError says which file is wrong."""
    if not config.keys_dir:
        raise ConfigError("--keys-dir is required (create one: data-service keys create --keys-dir=DIR)")
    return Protector(KeysDir(config.keys_dir, kek_from(config.kek_file)))


def build(config: Config) -> tuple[Context, HTTPServer]:
    """The app and its parts; raises ModelError, KeysetError or ConfigError at startup."""
    models = load_models(config.models_path) if config.models_path else Models({})
    guard = protector(config)
    couch = connect(config)
    db = couch.database(config.database)
    ctx = Context(config=config, couch=couch, db=db, models=models,
                  store=DocumentStore(db, IdPool(couch), guard), spec=spec_for(models))
    return ctx, HTTPServer(make_app(ctx), xheaders=False)


async def serve(config: Config) -> None:
    ctx, server = build(config)
    server.listen(config.port, config.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("data-service listening on http://%s:%d (CouchDB %s, database %s)",
             config.listen, config.port, config.couchdb_url, config.database)
    await stop.wait()
    log.info("shutting down")
    server.stop()
    await server.close_all_connections()
    await ctx.couch.aclose()


def run(config: Config) -> None:
    """Run ``serve`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
