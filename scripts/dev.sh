#!/usr/bin/env bash
# Run data-service against the local dev CouchDB (pouchdb-server, data in .devcouch/)
# until Ctrl-C; the dev server is stopped on exit. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8080}
COUCH_PORT=${COUCH_PORT:-15984}
DATABASE=${DATABASE:-dev}

.venv/bin/python scripts/devcouch.py start --port "$COUCH_PORT" --database "$DATABASE"
trap '.venv/bin/python scripts/devcouch.py stop' EXIT
[ -f .devcouch/keys/signing.json ] || .venv/bin/data-service keys create --keys-dir=.devcouch/keys
.venv/bin/data-service serve \
  --couchdb="http://127.0.0.1:$COUCH_PORT" --database="$DATABASE" \
  --couchdb-user=admin --couchdb-password-file=.devcouch/admin-password \
  --models=models/sample.yaml --keys-dir=.devcouch/keys --auto-install --port="$PORT" "$@"
