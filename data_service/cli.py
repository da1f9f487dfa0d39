"""data-service: sidecar HTTP data-access service in front of CouchDB.

Usage:
  data-service serve [options]
  data-service -h | --help
  data-service --version

Commands:
  serve                       Run the HTTP service.

Options:
  --models=FILE               Models file (YAML or JSON) declaring the document types.
  --couchdb=URL               CouchDB base URL, without credentials
                              [default: http://127.0.0.1:5984]
  --database=NAME             Database holding the documents [default: data_service]
  --couchdb-user=NAME         User for CouchDB BASIC auth.
  --couchdb-password-file=F   File holding that user's password; without it the
                              password is read from $DATA_SERVICE_COUCHDB_PASSWORD.
  --ca-file=FILE              CA bundle to verify an https:// CouchDB.
  --no-verify-tls             Do not verify CouchDB's certificate (never in production).
  --connect-timeout=SECONDS   Time to open a connection to CouchDB [default: 5]
  --request-timeout=SECONDS   Time for one CouchDB request [default: 30]
  --max-connections=N         Keep-alive connections to CouchDB [default: 100]
  --listen=ADDRESS            Address to listen on [default: 127.0.0.1]
  --port=PORT                 Port to listen on [default: 8080]
  --max-body=BYTES            Largest request body accepted [default: 1048576]
  --log-level=LEVEL           debug, info, warning or error [default: info]
  -h --help                   Show this text.
  --version                   Show the version.

Passwords are never taken from flags or URLs: they would show in the process list.
"""

from __future__ import annotations

import logging
import sys

from docopt import docopt

from . import __version__
from .config import Config, ConfigError


def main(argv: list[str] | None = None) -> int:
    args = docopt(__doc__, argv=argv, version=f"data-service {__version__}")
    try:
        config = Config.from_args(args)
    except ConfigError as exc:
        print(f"data-service: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args["serve"]:
        from .models import ModelError
        from .server import run

        try:
            run(config)
        except ModelError as exc:
            print(f"data-service: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
