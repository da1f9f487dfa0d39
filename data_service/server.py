"""Wire the parts together and serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

import uvloop
from tornado.httpserver import HTTPServer

from . import tracing, worker_metrics
from .background import every
from .buildinfo import BuildInfo
from .cache import Cache, Stamps
from .callers import Door
from .config import Config, ConfigError
from .couchdb import TLS, CouchDB, Hooks, IdPool, Limits, Timeouts
from .design import design_docs, query_designs
from .keys import KeysDir, kek_from
from .metrics import Metrics
from .models import Models, load_models
from .observe import Observer
from .openapi import spec_for
from .protection import Keyring
from .store import DocumentStore
from .store.hashing import Hasher
from .store.locks import DocLocks
from .store.sweeper import run_sweeper
from .store.warmer import Warmer, run_warmer
from .web import Context, Streams, make_app

log = logging.getLogger("data_service")


def connect(config: Config, hooks: Hooks = Hooks()) -> CouchDB:
    """The CouchDB client; ``hooks`` see every request attempt (metrics, logs, spans)."""
    return CouchDB(
        config.couchdb_url,
        auth=config.couchdb_auth,
        transport_kind=config.couchdb_transport,
        timeouts=Timeouts(connect=config.connect_timeout, request=config.request_timeout),
        # long polls: the callers' change streams and the read cache's feed
        limits=Limits(max_connections=config.max_connections, max_long_polls=config.max_streams + 1),
        tls=TLS(ca_file=config.ca_file, verify=config.verify_tls),
        hooks=hooks,
    )


def keyring(config: Config) -> Keyring:
    """The keysets of ``--keys-dir`` for the configured deployment; KeysetError says
    which file is wrong."""
    if not config.keys_dir:
        raise ConfigError("--keys-dir is required (create one: data-service keys create --keys-dir=DIR)")
    return Keyring(KeysDir(config.keys_dir, kek_from(config.kek_file)), config.deployment, accept_v1=config.accept_v1)


def preflight(config: Config) -> None:
    """The startup checks ``build`` makes, without building: for the parent of ``--workers``."""
    Door.from_config(config)
    design_docs(load_models(config.models_path) if config.models_path else Models({}))
    keyring(config)


def build(
    config: Config,
    spans: tracing.Tracing | None = None,
    stamps: Stamps | None = None,
    worker: int = 0,
    metrics_dir: Path | None = None,
) -> tuple[Context, HTTPServer]:
    """The app and its parts; raises ModelError, KeysetError or ConfigError at startup.
    ``spans`` defaults to what the ``OTEL_*`` variables ask for; ``stamps``: the write
    counters the workers share (``workers``), this process's row being ``worker``;
    ``metrics_dir``: where the workers' metrics snapshots meet (``worker_metrics``)."""
    door = Door.from_config(config)  # a non-loopback listener without tokens stops here, first
    models = load_models(config.models_path) if config.models_path else Models({})
    design_docs(models)  # a declared index no view can serve stops startup here
    keys = keyring(config)
    metrics = Metrics()
    if metrics_dir is not None:
        metrics.workers = worker_metrics.WorkerMetrics(metrics_dir, worker)
    spans = spans if spans is not None else tracing.from_env()
    couch = connect(config, Observer(metrics, spans))
    store = DocumentStore(
        couch.database(config.database),
        IdPool(couch),
        keys,
        hasher=Hasher(limit=config.bcrypt_queue, max_wait=config.bcrypt_wait),
        idempotency_ttl=config.idempotency_ttl,
        cursor_ttl=config.cursor_ttl,
        cache=Cache(int(config.cache_mb * 1024 * 1024), stamps or Stamps.private()),
        locks=DocLocks(str(metrics_dir / "documents.lock")) if metrics_dir is not None else None,
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
        door=door,
        streams=Streams(config.max_streams),
    )
    return ctx, http_server(make_app(ctx), config)


READ_CHUNK = 64 * 1024  # what Tornado reads from a connection at a time (HTTPServer chunk_size)


def http_server(app: object, config: Config) -> HTTPServer:
    """Tornado's own limits from the flags. Every handler streams its body and answers 413
    itself past ``--max-body`` (``web.base``), also for chunked bodies; ``max_body_size``
    stays the bound for anything that reaches Tornado's buffering. The read buffer holds
    one request's headers and one read chunk of its body."""
    return HTTPServer(
        app,
        xheaders=False,
        chunk_size=READ_CHUNK,
        max_header_size=config.max_header_size,
        max_body_size=config.max_body,
        max_buffer_size=config.max_header_size + READ_CHUNK + config.max_body,
        idle_connection_timeout=config.idle_timeout,
        body_timeout=config.body_timeout,
    )


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
    metrics_dir: Path | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; with ``auto_install`` run the installer first. A
    worker (``workers``) gets the bound ``sockets``, the shared ``stamps``, its index
    and the metrics directory; worker 0 alone runs the periodic jobs (sweeper, index warmer,
    expired keys)."""
    ctx, server = build(config, stamps=stamps, worker=worker, metrics_dir=metrics_dir)
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
    if ctx.metrics.workers is not None:
        await ctx.metrics.publish()
        tasks.append(asyncio.create_task(every(worker_metrics.INTERVAL, ctx.metrics.publish)))
    if worker == 0:
        tasks.append(asyncio.create_task(every(min(600.0, config.idempotency_ttl), expire_idempotency_keys)))
        if config.reconcile_interval > 0:
            tasks.append(asyncio.create_task(run_sweeper(store.reconciler, ctx.models, config.reconcile_interval)))
        if config.warm_interval > 0:
            warmer = Warmer(store.db, query_designs(ctx.models))
            tasks.append(asyncio.create_task(run_warmer(warmer, config.warm_interval)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if (tokens := ctx.door.tokens) is not None:  # rotation: edit the file, then kill -HUP
        reloads: set[asyncio.Task] = set()

        def reload_tokens() -> None:
            task = asyncio.create_task(asyncio.to_thread(tokens.reload))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload_tokens)
    log.info(
        "data-service %s listening on http://%s:%d (CouchDB %s, database %s, callers: %s, worker %d of %d)",
        ctx.build.version,
        config.listen,
        config.port,
        config.couchdb_url,
        config.database,
        f"{len(ctx.door.tokens.tokens)} bearer tokens" if ctx.door.tokens else "loopback, no token",
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
