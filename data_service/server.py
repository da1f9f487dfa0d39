"""Wire the parts together and serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Awaitable, Callable

from tornado.httpserver import HTTPServer

from .config import Config, ConfigError
from .couchdb import TLS, CouchDB, CouchDBError, IdPool, Limits, NotFound, Timeouts
from .design import design_docs
from .keys import KeysDir, kek_from
from .metrics import Metrics
from .models import Models, load_models
from .openapi import spec_for
from .protection import Protector
from .reconcile import run_sweeper
from .store import DocumentStore
from .web import Context, make_app

log = logging.getLogger("data_service")


def connect(config: Config, observer: Callable[[str, str, int | None, float], None] | None = None) -> CouchDB:
    """The CouchDB client; ``observer`` sees every request attempt (the metrics hook)."""
    return CouchDB(
        config.couchdb_url,
        auth=config.couchdb_auth,
        timeouts=Timeouts(connect=config.connect_timeout, request=config.request_timeout),
        limits=Limits(max_connections=config.max_connections),
        tls=TLS(ca_file=config.ca_file, verify=config.verify_tls),
        observer=observer,
    )


def protector(config: Config) -> Protector:
    """The keysets of ``--keys-dir``; KeysetError says which file is wrong."""
    if not config.keys_dir:
        raise ConfigError("--keys-dir is required (create one: data-service keys create --keys-dir=DIR)")
    return Protector(KeysDir(config.keys_dir, kek_from(config.kek_file)))


def build(config: Config) -> tuple[Context, HTTPServer]:
    """The app and its parts; raises ModelError, KeysetError or ConfigError at startup."""
    models = load_models(config.models_path) if config.models_path else Models({})
    design_docs(models)  # a declared index no view can serve stops startup here
    guard = protector(config)
    metrics = Metrics()
    couch = connect(config, observer=metrics.observe_couchdb)
    db = couch.database(config.database)
    store = DocumentStore(db, IdPool(couch), guard, idempotency_ttl=config.idempotency_ttl)
    metrics.watch(store)
    ctx = Context(config=config, couch=couch, db=db, models=models,
                  store=store, spec=spec_for(models), metrics=metrics)
    return ctx, HTTPServer(make_app(ctx), xheaders=False)


async def serve(config: Config, auto_install: bool = False) -> None:
    """Serve until SIGINT/SIGTERM; with ``auto_install`` run the installer first."""
    ctx, server = build(config)
    if auto_install:
        from .installer import install

        try:
            await install(ctx.couch, config.database, ctx.models, ctx.store.protector,
                          user=config.couchdb_user, out=sys.stderr, progress_out=sys.stderr)
        except BaseException:
            await ctx.couch.aclose()
            raise
    server.listen(config.port, config.listen)
    tasks = [asyncio.create_task(every(min(600.0, config.idempotency_ttl), expire_idempotency(ctx.store)))]
    if config.reconcile_interval > 0:
        tasks.append(asyncio.create_task(run_sweeper(ctx.store.reconciler, ctx.models, config.reconcile_interval)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("data-service listening on http://%s:%d (CouchDB %s, database %s)",
             config.listen, config.port, config.couchdb_url, config.database)
    await stop.wait()
    log.info("shutting down")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    server.stop()
    await server.close_all_connections()
    await ctx.couch.aclose()


def expire_idempotency(store: DocumentStore) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        if expired := await store.expire_idempotency_records():
            log.info("idempotency: %d expired records deleted", expired)
    return job


async def every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled. Failures are logged and
    never end the loop; a missing database or view is logged once until it is back."""
    missing = False
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except NotFound as exc:
            if not missing:
                log.warning("%s: %s; run data-service install", job.__qualname__, exc)
            missing = True
            continue
        except CouchDBError as exc:
            log.warning("%s: failed: %s", job.__qualname__, exc)
        except Exception:
            log.exception("%s: failed", job.__qualname__)
        missing = False


def run(config: Config, auto_install: bool = False) -> None:
    """Run ``serve`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config, auto_install))
    else:
        uvloop.run(serve(config, auto_install))
