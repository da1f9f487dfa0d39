"""Wire the parts together and serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys

import uvloop
from tornado.httpserver import HTTPServer

from . import tracing
from .background import every
from .buildinfo import BuildInfo
from .cache import Cache, Stamps
from .config import Config, ConfigError
from .conflicts.sweeper import run_sweeper
from .couchdb import TLS, CouchDB, Hooks, IdPool, Limits, Timeouts
from .design import design_docs
from .keys import KeysDir, kek_from
from .metrics import Metrics
from .models import Models, load_models
from .observe import Observer
from .openapi import spec_for
from .protection import Keyring
from .store import DocumentStore
from .web import Context, make_app

log = logging.getLogger("data_service")


def connect(config: Config, hooks: Hooks = Hooks()) -> CouchDB:
    """The CouchDB client; ``hooks`` see every request attempt (metrics, logs, spans)."""
    return CouchDB(
        config.couchdb_url,
        auth=config.couchdb_auth,
        timeouts=Timeouts(connect=config.connect_timeout, request=config.request_timeout),
        limits=Limits(max_connections=config.max_connections),
        tls=TLS(ca_file=config.ca_file, verify=config.verify_tls),
        hooks=hooks,
    )


def keyring(config: Config) -> Keyring:
    """The keysets of ``--keys-dir`` for the configured deployment; KeysetError says
    which file is wrong."""
    if not config.keys_dir:
        raise ConfigError("--keys-dir is required (create one: data-service keys create --keys-dir=DIR)")
    return Keyring(KeysDir(config.keys_dir, kek_from(config.kek_file)), config.deployment, accept_v1=config.accept_v1)


def build(
    config: Config, spans: tracing.Tracing | None = None, stamps: Stamps | None = None, worker: int = 0
) -> tuple[Context, HTTPServer]:
    """The app and its parts; raises ModelError, KeysetError or ConfigError at startup.
    ``spans`` defaults to what the ``OTEL_*`` variables ask for; ``stamps``: the write
    counters the workers share (``workers``), this process's row being ``worker``."""
    models = load_models(config.models_path) if config.models_path else Models({})
    design_docs(models)  # a declared index no view can serve stops startup here
    keys = keyring(config)
    metrics = Metrics()
    spans = spans if spans is not None else tracing.from_env()
    couch = connect(config, Observer(metrics, spans))
    store = DocumentStore(
        couch.database(config.database),
        IdPool(couch),
        keys,
        idempotency_ttl=config.idempotency_ttl,
        cursor_ttl=config.cursor_ttl,
        cache=Cache(int(config.cache_mb * 1024 * 1024), stamps or Stamps.private()),
    )
    store.worker = worker
    metrics.watch(store)
    ctx = Context(
        config=config,
        models=models,
        store=store,
        spec=spec_for(models),
        build=BuildInfo.of(config.models_path, keys),
        metrics=metrics,
        tracing=spans,
    )
    return ctx, HTTPServer(make_app(ctx), xheaders=False)


async def install_first(config: Config, ctx: Context | None = None) -> None:
    """The installer's steps (``--auto-install``) before serving; once, before forking."""
    from .installer import install

    own = ctx is None
    ctx = ctx or build(config)[0]
    try:
        await install(
            ctx.store.db.couch,
            config.database,
            ctx.models,
            ctx.store.lifecycle.keys,
            user=config.couchdb_user,
            out=sys.stderr,
            progress_out=sys.stderr,
        )
    except BaseException:
        await ctx.store.aclose()
        raise
    if own:
        await ctx.store.aclose()


async def serve(
    config: Config,
    auto_install: bool = False,
    sockets: list[socket.socket] | None = None,
    stamps: Stamps | None = None,
    worker: int = 0,
) -> None:
    """Serve until SIGINT/SIGTERM; with ``auto_install`` run the installer first. A
    worker (``workers``) gets the bound ``sockets``, the shared ``stamps`` and its
    index; worker 0 alone runs the periodic jobs (sweeper, expired keys)."""
    ctx, server = build(config, stamps=stamps, worker=worker)
    store = ctx.store
    if auto_install:
        await install_first(config, ctx)
    if sockets is None:
        server.listen(config.port, config.listen)
    else:
        server.add_sockets(sockets)

    async def expire_idempotency_keys() -> None:
        if expired := await store.expire_idempotency_records():
            log.info("idempotency: %d expired records deleted", expired)

    tasks = [asyncio.create_task(store.follow_changes())]
    if worker == 0:
        tasks.append(asyncio.create_task(every(min(600.0, config.idempotency_ttl), expire_idempotency_keys)))
        if config.reconcile_interval > 0:
            tasks.append(asyncio.create_task(run_sweeper(store.reconciler, ctx.models, config.reconcile_interval)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "data-service %s listening on http://%s:%d (CouchDB %s, database %s, worker %d of %d)",
        ctx.build.version,
        config.listen,
        config.port,
        config.couchdb_url,
        config.database,
        worker,
        config.workers,
        extra={"fields": ctx.build.as_dict()},
    )
    await stop.wait()
    await drain(ctx, server, tasks, config.drain_timeout)


async def drain(ctx: Context, server: HTTPServer, tasks: list[asyncio.Task], timeout: float) -> None:
    """Graceful shutdown: readiness fails at once (``draining``) and new connections are
    refused; requests in flight finish, for up to ``timeout`` seconds; then the background
    tasks stop and every connection is closed. Requests still running then are cut off."""
    ctx.inflight.draining = True
    server.stop()  # closes the listening sockets: new connections are refused
    log.info("draining: %d requests in flight, up to %.1f s", len(ctx.inflight), timeout)
    if left := await ctx.inflight.wait_idle(timeout):
        log.warning("drain timeout: %d requests still in flight are cut off", left)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.close_all_connections()
    await ctx.store.aclose()
    ctx.tracing.shutdown()
    log.info("stopped")


def run(config: Config, auto_install: bool = False) -> None:
    """Serve on uvloop: in this process, or in ``config.workers`` forked ones."""
    if config.workers > 1:
        from .workers import run_workers

        run_workers(config, auto_install)
    else:
        uvloop.run(serve(config, auto_install))
