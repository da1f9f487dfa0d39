"""Wire the parts together, log in to CouchDB, and serve one process until SIGTERM
(``workers`` binds the ports, forks and supervises)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from pathlib import Path

from tornado.httpserver import HTTPServer

from . import tracing, worker_metrics
from .background import every
from .buildinfo import BuildInfo
from .cache import Cache, WriteCounters
from .callers import Door, TokenFile
from .config import PASSWORD_ENV, Config, ConfigError
from .couchdb import (
    TLS,
    TRANSPORTS,
    AsyncTransport,
    CouchDB,
    CouchDBError,
    CredentialGate,
    Forbidden,
    GateState,
    Hooks,
    IdPool,
    Limits,
    Timeouts,
    Unauthorized,
    Unavailable,
)
from .design import design_docs, query_designs
from .keys import KeysDir, kek_from
from .metrics import Metrics
from .models import Models, load_models
from .observe import Observer
from .openapi import spec_for
from .protection import Keyring
from .reloads import Reloader, Watched
from .secretfiles import Fingerprint, fingerprint
from .store import DocumentStore
from .store.hashing import Hasher
from .store.locks import DocLocks
from .store.sweeper import run_sweeper
from .store.warmer import Warmer, run_warmer
from .web import Context, Streams, make_app, make_ops_app

log = logging.getLogger("data_service")


def connect(config: Config, hooks: Hooks = Hooks(), gate: GateState | None = None) -> CouchDB:
    """The CouchDB client; ``hooks`` see every request attempt (metrics, logs, spans).
    With a ``gate`` (serve) and a user, requests pass the credential gate
    (``couchdb.gate``): once CouchDB has refused the credentials it is sent almost
    nothing, never a lockout's worth. (A command stops at its first refusal.)"""
    transport: AsyncTransport = TRANSPORTS[config.couchdb_transport](
        config.couchdb_url,
        auth=config.couchdb_auth,
        timeouts=Timeouts(connect=config.connect_timeout, request=config.request_timeout),
        # long polls: the callers' change streams and the read cache's feed
        limits=Limits(max_connections=config.max_connections, max_long_polls=config.max_streams + 1),
        tls=TLS(ca_file=config.ca_file, verify=config.verify_tls),
    )
    if gate is not None and config.couchdb_user is not None:
        transport = CredentialGate(transport, config.couchdb_user, config.couchdb_url, gate)
    return CouchDB(config.couchdb_url, transport=transport, hooks=hooks)


def login_refused(config: Config, exc: CouchDBError) -> ConfigError:
    """CouchDB refusing the credentials (``couchdb.gate.refuses``), as the one line a
    command exits 2 with: it names the user and CouchDB's URL, never the password."""
    user = config.couchdb_user
    if user is None:
        return ConfigError(f"CouchDB at {config.couchdb_url} wants credentials ({exc}): give --couchdb-user")
    if exc.status == 403 and "locked" in (exc.reason or ""):
        return ConfigError(
            f"CouchDB at {config.couchdb_url} has locked user {user!r} out after failed logins from this "
            "address; it unlocks by itself (5 minutes by default): fix the password meanwhile"
        )
    return ConfigError(
        f"CouchDB at {config.couchdb_url} refused user {user!r} ({exc.reason or exc.error or exc.status}): "
        f"check --couchdb-password-file or ${PASSWORD_ENV}"
    )


async def log_in(config: Config) -> None:
    """One login (``GET /_session``) before serving: ConfigError when CouchDB refuses
    the credentials (one failed login, never a lockout's worth: ``couchdb.gate``) or
    does not log the user in. A CouchDB that does not answer is logged and serving goes
    on (readiness fails until it answers)."""
    if config.couchdb_user is None:
        return
    async with connect(config) as couch:
        try:
            session = await couch.json("GET", "/_session")
        except (Unauthorized, Forbidden) as exc:
            raise login_refused(config, exc) from None
        except Unavailable as exc:
            log.warning("CouchDB at %s does not answer (%s); serving, not ready until it does", config.couchdb_url, exc)
            return
    name = (session.get("userCtx") or {}).get("name") if isinstance(session, dict) else None
    if name != config.couchdb_user:
        raise ConfigError(
            f"CouchDB at {config.couchdb_url} did not log in user {config.couchdb_user!r} "
            "(is basic authentication enabled in its [chttpd] authentication_handlers?)"
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
    counters: WriteCounters | None = None,
    worker: int = 0,
    metrics_dir: Path | None = None,
    gate: GateState | None = None,
) -> tuple[Context, HTTPServer]:
    """The app and its parts; raises ModelError, KeysetError or ConfigError at startup.
    ``spans`` defaults to what the ``OTEL_*`` variables ask for; ``counters``: the write
    counters the workers share (``workers``), this process's row being ``worker``;
    ``metrics_dir``: where the workers' metrics snapshots meet (``worker_metrics``);
    ``gate``: the credential gate's state the workers share (else this process's own)."""
    door = Door.from_config(config)  # a non-loopback listener without tokens stops here, first
    models = load_models(config.models_path) if config.models_path else Models({})
    design_docs(models)  # a declared index no view can serve stops startup here
    keys = keyring(config)
    metrics = Metrics()
    if metrics_dir is not None:
        metrics.workers = worker_metrics.WorkerMetrics(metrics_dir, worker)
    spans = spans if spans is not None else tracing.from_env()
    couch = connect(config, Observer(metrics, spans), gate or GateState())
    store = DocumentStore(
        couch.database(config.database),
        IdPool(couch),
        keys,
        hasher=Hasher(limit=config.bcrypt_queue, max_wait=config.bcrypt_wait),
        idempotency_ttl=config.idempotency_ttl,
        cursor_ttl=config.cursor_ttl,
        cache=Cache(int(config.cache_mb * 1024 * 1024), counters or WriteCounters.private()),
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


async def prepare(config: Config, auto_install: bool) -> None:
    """What runs once before the ports are bound: the login, then ``--auto-install``."""
    await log_in(config)
    if auto_install:
        await install_first(config)


async def install_first(config: Config) -> None:
    """The installer's steps (``--auto-install``) before serving; once, before forking."""
    from .installer import install

    ctx = build(config)[0]
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
    finally:
        await ctx.store.aclose()


def secret_files(config: Config) -> dict[str, list[str]]:
    """The files of each secret group ``reloader`` watches."""
    keysets = [str(path) for path in KeysDir(config.keys_dir or "").files()]
    files = {"keysets": keysets + ([config.kek_file] if config.kek_file else [])}
    if config.api_token_file:
        files["api tokens"] = [config.api_token_file]
    return files


def reloader(ctx: Context, config: Config, seen: dict[str, Fingerprint]) -> Reloader:
    """The token file and the keysets (with the KEK file), re-read on SIGHUP and when
    they change on disk (``reloads``); ``seen``: their fingerprints from before ``build``
    read them. New keysets flush the read cache: an entry may rest on a key just disabled."""
    files = secret_files(config)
    keys = ctx.store.lifecycle.keys

    def use_keys(fresh: Keyring) -> None:
        keys.adopt(fresh)
        ctx.store.cache.flush()
        ctx.build = BuildInfo.of(config.models_path, keys)
        log.info("keysets reloaded", extra={"fields": {"keys": ctx.build.keys}})

    groups: list[Watched] = [Watched("keysets", files["keysets"], lambda: keyring(config), use_keys, seen["keysets"])]
    if (tokens := ctx.door.tokens) is not None:
        groups.append(Watched("api tokens", files["api tokens"], tokens.read, tokens.use, seen["api tokens"]))
    return Reloader(groups)


async def serve(
    config: Config,
    sockets: tuple[list[socket.socket], list[socket.socket]],
    counters: WriteCounters | None = None,
    worker: int = 0,
    metrics_dir: Path | None = None,
    gate: GateState | None = None,
) -> None:
    """Serve on the bound ``sockets`` (data, ops) until SIGINT/SIGTERM, then drain. A
    worker (``workers``) also gets the shared ``counters``, its index, the metrics
    directory and the gate state; worker 0 alone runs the periodic jobs (sweeper,
    index warmer, expired keys)."""
    seen = {name: fingerprint(paths) for name, paths in secret_files(config).items()}  # before build reads them
    ctx, server = build(config, counters=counters, worker=worker, metrics_dir=metrics_dir, gate=gate)
    store = ctx.store
    data_sockets, ops_sockets = sockets
    server.add_sockets(data_sockets)
    ops = http_server(make_ops_app(ctx), config) if ops_sockets else None
    if ops is not None:
        ops.add_sockets(ops_sockets)

    async def expire_idempotency_keys() -> None:
        if expired := await store.expire_idempotency_records():
            log.info("idempotency: %d expired records deleted", expired)

    secrets = reloader(ctx, config, seen)
    tasks = [asyncio.create_task(store.follow_changes()), asyncio.create_task(secrets.run())]
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
    reloads: set[asyncio.Task] = set()

    def reload_secrets() -> None:  # SIGHUP
        task = asyncio.create_task(secrets.reload_all())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_secrets)
    log.info(
        "data-service %s listening on http://%s:%d%s (CouchDB %s, database %s, callers: %s, worker %d of %d)",
        ctx.build.version,
        config.listen,
        config.port,
        f", ops on {config.ops_listen[0] or '*'}:{config.ops_listen[1]}" if config.ops_listen else "",
        config.couchdb_url,
        config.database,
        _callers(ctx.door.tokens),
        worker,
        config.workers,
        extra={"fields": ctx.build.as_dict()},
    )
    settle_memory()
    await stop.wait()
    await drain(ctx, server, tasks, config)
    if ops is not None:  # probes and scrapes answer until the very end
        ops.stop()
        await ops.close_all_connections()
    await ctx.store.aclose()
    ctx.tracing.shutdown()
    log.info("stopped")


GC_YOUNG = 7000  # objects in the youngest generation before it is collected (Python's default: 700)


def settle_memory() -> None:
    """What startup built (models, schemas, the OpenAPI document, keysets) lives as long
    as the process: it is frozen, so no collection walks it again. The youngest
    generation is collected at 7,000 objects, not 700: the requests in flight alone
    passed 700 every few requests. Measured with 1 worker against CouchDB 3.5.2 (bench,
    get-nocache/create/update at c=50, issue 25): the collector took 0.34-0.40 s of the
    sidecar's ~7 s of CPU, now 0.05 s (the one collection here at startup included);
    the full collections that paused the loop ~35 ms each, 4 per run, are gone; RSS
    unchanged."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


def _callers(tokens: TokenFile | None) -> str:
    return f"{len(tokens.tokens)} bearer tokens" if tokens else "loopback, no token"


async def stop_all(tasks: list[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait until each has stopped. A cancellation can be spent
    without effect (a CouchDB request's own timeout firing at that moment turns it into
    a timeout its caller retries), so what is still running is cancelled again."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


async def drain(ctx: Context, server: HTTPServer, tasks: list[asyncio.Task], config: Config) -> None:
    """Graceful shutdown. Readiness fails at once (``draining``). With ``--drain-delay``
    the service first keeps listening and answering while the application still calls
    (until nothing has been in flight for ``--drain-quiet`` seconds, or the delay is
    over). Then new connections are refused, long polls answer and event streams end
    (``InFlight.closing``), and the requests in flight finish, for up to
    ``--drain-timeout`` seconds; then the background tasks stop and every connection is
    closed. Requests still running then are cut off."""
    inflight = ctx.inflight
    inflight.draining = True
    if config.drain_delay > 0:
        log.info("SIGTERM: serving on for up to %.1f s while the application still calls", config.drain_delay)
        await inflight.wait_quiet(config.drain_quiet, config.drain_delay)
    inflight.close()
    server.stop()  # closes the listening sockets: new connections are refused
    log.info("draining: %d requests in flight, up to %.1f s", len(inflight), config.drain_timeout)
    if left := await inflight.wait_idle(config.drain_timeout):
        log.warning("drain timeout: %d requests still in flight are cut off", left)
        inflight.cut_off()
    await stop_all(tasks)
    await server.close_all_connections()
