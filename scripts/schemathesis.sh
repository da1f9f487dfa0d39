#!/usr/bin/env bash
# Black-box tests of the served spec (make test-schemathesis): a private dev server
# (pouchdb-server, in memory) and a sidecar serving the sample models on free loopback
# ports, then `schemathesis run` against the sidecar's own /openapi.json with every
# check and the stateful phase (scripts/schemathesis.toml, hooks in
# scripts/schemathesis_hooks.py). Bounded in time; exits non-zero on any server error or
# non-conformance. Both servers are stopped however it ends. Extra arguments go to
# `schemathesis run` (e.g. --seed=N to repeat a run).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-150}  # seconds of generation; the run ends within about a minute more

work=$(mktemp -d "${TMPDIR:-/tmp}/data-service-schemathesis.XXXXXX")
sidecar=
cleanup() {
    [ -n "$sidecar" ] && kill "$sidecar" 2>/dev/null && wait "$sidecar" 2>/dev/null
    $BIN/python scripts/devcouch.py stop --dir="$work/couch" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

$BIN/python scripts/devcouch.py start --dir="$work/couch" --memory --database=schemathesis >/dev/null
couch_port=$(cut -d' ' -f2 "$work/couch/pid")
port=$($BIN/python -c 'import sys; sys.path.insert(0, "scripts"); import devcouch; print(devcouch.free_port())')
$BIN/data-service keys create --keys-dir="$work/keys" >/dev/null
# bcrypt cost stays as the models say (10): fast enough for thousands of cases
$BIN/data-service serve --couchdb="http://127.0.0.1:$couch_port" --database=schemathesis \
    --couchdb-user=admin --couchdb-password-file="$work/couch/admin-password" \
    --models=models/sample.yaml --keys-dir="$work/keys" --auto-install --port="$port" \
    --log-format=json --log-level=warning >"$work/sidecar.log" 2>&1 &
sidecar=$!

base="http://127.0.0.1:$port"
for _ in $(seq 300); do
    curl -fsS "$base/_health" >/dev/null 2>&1 && break
    kill -0 "$sidecar" 2>/dev/null || { cat "$work/sidecar.log" >&2; echo "schemathesis.sh: the sidecar exited" >&2; exit 1; }
    sleep 0.1
done

status=0
$BIN/schemathesis --config-file=scripts/schemathesis.toml \
    run "$base/openapi.json" --max-time="$MAX_TIME" "$@" || status=$?
if grep -q '"levelname": *"ERROR"\|Traceback' "$work/sidecar.log"; then
    echo "schemathesis.sh: the sidecar logged errors:" >&2
    grep '"ERROR"\|Traceback' "$work/sidecar.log" | head -20 >&2
    status=${status/#0/1}
fi
exit "$status"
