"""data-service: sidecar HTTP data-access service in front of CouchDB.

Usage:
  data-service serve --keys-dir=DIR [--kek-file=FILE] [--models=FILE] [--auto-install] [options]
  data-service install --keys-dir=DIR --models=FILE [--kek-file=F] [--seed=FILE] [--dry-run] [--delete --yes] [options]
  data-service keys create --keys-dir=DIR [--kek-file=FILE]
  data-service keys rotate --keys-dir=DIR --purpose=P [--kek-file=FILE]
  data-service keys (promote | disable | enable) --keys-dir=DIR --purpose=P --key-id=N [--kek-file=FILE]
  data-service keys list --keys-dir=DIR [--kek-file=FILE]
  data-service keys new-kek --out=FILE
  data-service verify --keys-dir=DIR [--kek-file=FILE] [options]
  data-service reencrypt --keys-dir=DIR --models=FILE [--kek-file=FILE] [options]
  data-service reconcile --keys-dir=DIR --models=FILE [--kek-file=FILE] [options]
  data-service migrate --keys-dir=DIR --models=FILE [--kek-file=FILE] [--batch=N] [options]
  data-service openapi [--models=FILE]
  data-service -h | --help
  data-service --version [--models=FILE] [--keys-dir=DIR] [--kek-file=FILE]

Commands:
  serve                       Run the HTTP service. It first logs in to CouchDB once
                              (refused credentials: exit 2, before listening). With
                              the auto-install flag it runs the steps of `install`
                              (no seeds), then listens. It reconciles the documents the
                              ds_conflicts view lists (replication conflicts) every
                              reconcile interval. SIGHUP, or a change on disk,
                              reloads the token file and keysets. On SIGTERM it
                              fails readiness, keeps serving for the drain delay
                              while the application still calls, then drains: new
                              connections are refused, long polls and event streams
                              end, requests in flight finish (up to the drain
                              timeout), and it exits. It logs to stdout;
                              OpenTelemetry spans when the otel extra is installed
                              and OTEL_TRACES_EXPORTER or an
                              OTEL_EXPORTER_OTLP_*ENDPOINT is set.
  install                     Make the database what the models file says: create it,
                              set _security, create/update/remove the generated design
                              docs (never ones without the data_service marker),
                              report the server's uuids algorithm (set it with
                              --configure-server), warm new views, upsert the seed
                              documents. Idempotent: a second run changes nothing.
                              With --dry-run it prints the steps and changes nothing;
                              with --delete --yes it drops the whole database instead.
  keys create                 Write a new Tink keyset per purpose (signing, encryption,
                              deterministic, lookup) into --keys-dir, files 0600; never
                              overwrites.
  keys rotate                 Add a new key for --purpose, enabled but not primary:
                              sidecars restarted with it read what it protects.
  keys promote                Make --key-id the primary of --purpose, once every
                              sidecar has loaded it (restart them again to write with
                              it); then reencrypt, then disable the old key.
  keys disable | enable       Change a key's status (the primary cannot be disabled).
  keys list                   Show every key: purpose, id, status, primary.
  keys new-kek                Write a key-encryption key: with --kek-file (or the KEK
                              itself in $DATA_SERVICE_KEK) keysets are stored encrypted.
  verify                      Check every document's signature; lists failing ids and
                              exits 1 if any fail.
  reencrypt                   Re-protect and re-sign every document under the primary
                              keys in the current formats (after a rotation, and once
                              to upgrade version 1 signatures); resumable, safe beside
                              traffic. Reconciles replication conflicts first.
  reconcile                   One pass over the documents with replication conflicts
                              (the ds_conflicts view): merge each per its type's
                              conflict policy, write the winner, delete the losing
                              revisions. Lists unresolvable documents and discarded
                              (tampered) revisions; exits 1 unless all were resolved.
  migrate                     Rewrite every document of an older major version of a
                              declared type as its current version, by the type's
                              migrations in the models file, --batch documents at a
                              time, with progress. Resumable (current documents are
                              skipped) and safe beside traffic. Reconciles replication
                              conflicts first. Lists what it skipped (failing checks or
                              migrations) and exits 1 if anything was skipped.
  openapi                     Print the OpenAPI document serve answers at
                              GET /openapi.json for --models, byte for byte,
                              without CouchDB, keys or a running service.

Options of serve:
  --listen=ADDRESS            Address to listen on [default: 127.0.0.1]
  --port=PORT                 Port to listen on; one data-service per port
                              [default: 8080]
  --ops-listen=ADDRESS:PORT   A second listener serving only /_health (liveness;
                              readiness with ?quick=false) and /_metrics, without a
                              token: for kubelet probes and Prometheus on the pod IP
                              (e.g. 0.0.0.0:9090). Never any data.
  --api-token-file=FILE       Bearer tokens callers must send (Authorization: Bearer),
                              one per line, # comments; reloaded on SIGHUP and when
                              the file changes. Without it the service listens on
                              loopback only.
  --open-metrics              /_metrics answers without a token.
  --open-readiness            Readiness (/_health?quick=false) answers without a token.
  --allowed-hosts=HOSTS       Host names (comma-separated, any port) accepted besides
                              localhost, 127.0.0.1 and [::1]; others get 421
                              [default: ]
  --max-body=BYTES            Largest request body accepted, on every route and for
                              chunked bodies too (413) [default: 1048576]
  --max-header-size=BYTES     Largest request line + headers; larger ones get the
                              connection closed [default: 16384]
  --idle-timeout=SECONDS      Seconds a connection may wait for a request's headers
                              [default: 60]
  --body-timeout=SECONDS      Seconds to receive a request body [default: 30]
  --drain-delay=SECONDS       After SIGTERM, keep listening and answering this long at
                              most while the application still sends requests
                              (classic sidecars get SIGTERM with the application);
                              readiness fails from the start [default: 0]
  --drain-quiet=SECONDS       The delay ends early once no request has been in
                              flight for this long; 0: always the whole delay
                              [default: 2]
  --drain-timeout=SECONDS     Then, seconds requests in flight get to finish; keep
                              delay + timeout below the stop grace period
                              (docker: 10 s, Kubernetes: 30 s) [default: 8]
  --max-streams=N             Change streams (GET /v1/{type}/_changes with
                              feed=longpoll or as server-sent events) open at once,
                              per worker; one more is answered 503 busy. Their long
                              polls use N+1 connections of their own (one is the
                              read cache's feed), beside --max-connections
                              [default: 32]
  --cache-size=MB             Memory per worker for the read cache of verified
                              documents (GET by id), kept fresh by CouchDB's change
                              feed; 0 disables it [default: 64]
  --workers=N                 Serving processes sharing the port, forked after it is
                              bound; 0: one per CPU this process may use (a
                              container's CPU quota counts) [default: 0]
  --auto-install              Run the install steps before listening.
  --reconcile-interval=SECONDS  Seconds between conflict sweeps; 0 disables them
                              [default: 60]
  --warm-interval=SECONDS     Seconds between the index warmer's passes: while the
                              database changes, each index of the types is brought
                              up to date, one at a time; 0 disables it [default: 5]
  --max-bulk=N                Most items in one POST /v1/{type}/_bulk [default: 500]
  --idempotency-ttl=SECONDS   How long an Idempotency-Key is remembered; expired
                              keys are forgotten and their records deleted
                              [default: 86400]
  --cursor-ttl=SECONDS        How long a query's `next` cursor stays valid
                              [default: 3600]
  --bcrypt-queue=N            bcrypt jobs (hashes and verifies) queued or running
                              at once; one more is answered 503 busy [default: 64]
  --bcrypt-wait=SECONDS       Longest a bcrypt job waits for one of the 2 threads;
                              then 503 busy. No caller waits longer than this plus
                              one hash [default: 5]

Options of install:
  --service-user=NAME         Create this CouchDB user (a _users member, no roles) and
                              add it to the database's _security members, for serve
                              to run as instead of the server admin.
  --service-user-password-file=F  Its password; without it the password is read
                              from $DATA_SERVICE_SERVICE_USER_PASSWORD.
  --service-user-adopt        Take over an existing account that install did not
                              create (sets its password; keeps its roles). Without
                              it such an account is refused, unless it has no roles
                              and the password given logs in. Never a server admin.
  --seed=FILE                 Seed documents (YAML or JSON):
                              {"seeds": [{"type": T, "key": K, "data": {...}}, ...]}
  --dry-run                   Print what install would do; change nothing.
  --configure-server          Also set the server-wide node config uuids/algorithm =
                              sequential (every database on that CouchDB gets such
                              ids); without it install only reports the algorithm.
  --delete                    Delete the whole database (needs --yes).
  --yes                       Confirm --delete.

Options of keys:
  --purpose=P                 signing, encryption, deterministic or lookup.
  --key-id=N                  A key id as `keys list` shows it.
  --out=FILE                  Where to write (refuses to overwrite).

Options of migrate:
  --batch=N                   Documents per round trip of migrate [default: 500]

Options of serve, install, keys, verify, reencrypt, reconcile, migrate (models, keys):
  --models=FILE               Models file (YAML or JSON) declaring the document types.
  --keys-dir=DIR              Directory of Tink keysets (see keys create).
  --kek-file=FILE             Key-encryption key for encrypted keysets.
  --deployment-id=ID          What signatures and encryption bind documents to
                              instead of the database name: give replicas whose
                              databases replicate into each other the same one.
  --refuse-v1                 Treat version 1 signatures and ciphertexts (written
                              before documents were bound to their revision and
                              database) as integrity violations. Set it once
                              reencrypt has upgraded every document.

Options of serve, install, verify, reencrypt, reconcile, migrate (CouchDB, logs):
  --couchdb=URL               CouchDB base URL, without credentials
                              [default: http://127.0.0.1:5984]
  --database=NAME             Database holding the documents [default: data_service]
  --couchdb-user=NAME         User for CouchDB BASIC auth (needs a password).
  --couchdb-password-file=F   File holding that user's password; without it the
                              password is read from $DATA_SERVICE_COUCHDB_PASSWORD.
  --ca-file=FILE              CA bundle to verify an https:// CouchDB.
  --no-verify-tls             Do not verify CouchDB's certificate (never in production).
  --connect-timeout=SECONDS   Time to open a connection to CouchDB [default: 5]
  --request-timeout=SECONDS   Time for one CouchDB request [default: 30]
  --max-connections=N         Keep-alive connections to CouchDB [default: 100]
  --couchdb-transport=NAME    The HTTP client to CouchDB: httptools (asyncio
                              protocols and the llhttp parser), or aiohttp
                              [default: httptools]
  --log-level=LEVEL           debug, info, warning or error [default: info]
  --log-format=FORMAT         json (one object per line) or text; default: json
                              unless the log goes to a terminal

General options:
  -h --help                   Show this text; after a command, that command's help.
  --version                   Show the version; with --models the models file's
                              digest, with --keys-dir the key ids (never keys).

Key files, the token file and password files must pass the secret-file rule
(docs/security.md, "Secret files"): nobody but root and this process's user can
change them. Passwords and keys are never taken from flags or URLs: they would
show in the process list.
"""

from __future__ import annotations

import asyncio
import sys

from . import logs
from .config import Config, ConfigError
from .couchdb import CouchDBError
from .couchdb.gate import refuses
from .keys import KeysetError
from .models import ModelError
from .usage import HelpShown, UsageError, parse

# Each command's module is imported when it runs (data_service.commands): startup stays
# quick, and `keys` or `--version` never load the server.


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(__doc__, sys.argv[1:] if argv is None else argv)
    except HelpShown:
        return 0
    except UsageError as exc:
        print(f"data-service: {exc}", file=sys.stderr)
        return 2
    config: Config | None = None
    try:
        if args["--version"]:
            from .commands.version import version_command

            return version_command(args)
        if args["keys"]:
            from .commands.keys import keys_command

            return keys_command(args)
        if args["openapi"]:
            from .commands.openapi import openapi_command

            return openapi_command(args["--models"])
        config = Config.from_args(args)
        # serve logs to stdout (12-factor: the log is its output); commands report on
        # stdout, so their log goes to stderr
        logs.setup(config.log_level, config.log_format, sys.stdout if args["serve"] else sys.stderr)
        return _run(args, config)
    except (ConfigError, ModelError, KeysetError) as exc:
        print(f"data-service: {exc}", file=sys.stderr)
        return 2
    except CouchDBError as exc:  # the message names method, path and CouchDB's reason; never credentials
        if config is not None and refuses(exc.status, exc.reason):
            from .server import login_refused

            print(f"data-service: {login_refused(config, exc)}", file=sys.stderr)
            return 2
        print(f"data-service: CouchDB at {args['--couchdb']} failed: {exc}", file=sys.stderr)
        return 1


def _run(args: dict, config: Config) -> int:
    """The commands that take the configuration: serve, and those that talk to CouchDB."""
    if args["serve"]:
        from .workers import run

        run(config, auto_install=args["--auto-install"])
        return 0
    if args["install"]:
        from .commands.install import install_command

        return asyncio.run(install_command(args, config))
    if args["reconcile"]:
        from .commands.reconcile import reconcile_command

        return asyncio.run(reconcile_command(config))
    if args["verify"]:
        from .commands.verify import verify_command

        return asyncio.run(verify_command(config))
    if args["migrate"]:
        from .commands.migrate import batch_of, migrate_command

        return asyncio.run(migrate_command(config, batch_of(args)))
    from .commands.reencrypt import reencrypt_command

    return asyncio.run(reencrypt_command(config))
