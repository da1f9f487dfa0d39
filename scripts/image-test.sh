#!/usr/bin/env bash
# make image-test: build the container image with podman and smoke-test it the way
# docker/compose.yaml runs it, against Apache CouchDB 3.5.2 from the shared test script.
#
#   1. podman, runc, debootstrap (apt-get, when missing; needs root)
#   2. the base image: the stand-in scripts/image-base.sh builds (cached in podman's store)
#   3. the image: podman build --format docker (keeps HEALTHCHECK) --pull=never; size <= 200 MB
#   4. CouchDB 3.5.2 on the host; keysets and `install` (as the server admin) in containers
#   5. the sidecar in a pod (its own network namespace, as in compose or Kubernetes) with
#      compose's settings: read-only root, all capabilities dropped, no-new-privileges,
#      an init, uid 10001, loopback listener, token file, secrets as read-only files
#   6. checks: healthy (podman healthcheck run, polled), non-root, loopback only, 401
#      without a token, create/read round trip (scripts/image_smoke.py in an app container
#      in the pod), then SIGTERM: drained, exit 0
# Each step prints its time; everything started is removed at the end, however it ends.
# IMAGE=name:tag (default data-service:dev); IMAGE_MAX_MB (default 200).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
IMAGE=${IMAGE:-data-service:dev}
MAX_MB=${IMAGE_MAX_MB:-200}
pod=ds-smoke-$$
keys=$pod-keys
work=$(mktemp -d "${TMPDIR:-/tmp}/data-service-image.XXXXXX")
script=$(scripts/with-couchdb --script)
started=$SECONDS

step() {  # step NAME COMMAND...: run it, print its time
    local name=$1 at=$SECONDS
    shift
    echo "--- $name"
    "$@"
    echo "    $name: $((SECONDS - at)) s"
}

cleanup() {
    status=$?
    if [ $status -ne 0 ] && podman container exists "$pod-sidecar" 2>/dev/null; then
        echo "--- the sidecar's log (last 30 lines)"
        podman logs --tail 30 "$pod-sidecar" 2>&1 || true
    fi
    podman pod rm -f "$pod" >/dev/null 2>&1 || true
    podman volume rm -f "$keys" >/dev/null 2>&1 || true
    "$script" stop --dir="$work/couchdb" --wipe >/dev/null 2>&1 || true
    rm -rf "$work"
    echo "image-test: $([ $status -eq 0 ] && echo ok || echo "FAILED ($status)") in $((SECONDS - started)) s"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tools() {
    local missing=()
    for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    podman --version
}

# podman on this machine kind needs two settings (docs/deployment.md): ulimits root may set
# here (it lacks CAP_SYS_RESOURCE), and runc (crun refuses the mixed cgroup v1/v2 layout)
containers_conf() {
    local conf=$work/containers.conf nofile nproc
    nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
    [ "$nofile" = unlimited ] || [ "$nofile" -gt 20000 ] && nofile=20000
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nruntime = "runc"\n' \
        "$nofile" "$nofile" "$nproc" "$nproc" >"$conf"
    export CONTAINERS_CONF=$conf
}

build() {
    podman build --quiet --pull=never --format docker --layers=false \
        --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
        -t "$IMAGE" . >/dev/null
    local bytes
    bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
    echo "image: $IMAGE, $((bytes / 1000000)) MB (limit $MAX_MB MB); base: $(podman image inspect \
        --format '{{index .Labels "data-service.base"}}' docker.io/library/python:3.11-slim)"
    podman image inspect --format '{{json .Config.Healthcheck.Test}} user {{.Config.User}}' "$IMAGE"
    [ $((bytes / 1000000)) -le "$MAX_MB" ] || { echo "image-test: the image is over $MAX_MB MB" >&2; return 1; }
}

couchdb() {
    url=$("$script" start --dir="$work/couchdb")
    couch_port=${url##*:}
    "$script" status --dir="$work/couchdb"
    mkdir -p "$work/secrets"
    (cd "$work/secrets" && umask 022 &&
        cat "$work/couchdb/admin-password" >couchdb_admin_password &&
        python3 -c 'import secrets; print(secrets.token_hex(24))' >service_user_password &&
        python3 -c 'import secrets; print(secrets.token_hex(32))' >api_tokens)
    chmod 0444 "$work/secrets"/*  # as compose mounts them: readable by the image's non-root user
}

# every container: compose's hardening (docker/compose.yaml): a read-only root with one
# small tmpfs at /tmp (serve's workers keep their metrics there), no capabilities
hardened=(--read-only --read-only-tmpfs=false --tmpfs=/tmp:rw,nosuid,nodev,noexec,size=16m
    --cap-drop=ALL --security-opt=no-new-privileges --init)
quiet() {  # podman says it cannot reach systemd for the healthcheck timers: known, not an error here
    "$@" 2> >(grep -v 'systemd connection' >&2)
}
secret() { echo "-v=$work/secrets/$1:/run/secrets/$1:ro"; }

install() {
    podman pod create --name "$pod" --network slirp4netns:allow_host_loopback=true >/dev/null
    podman volume create "$keys" >/dev/null
    quiet podman run --rm --pod "$pod" "${hardened[@]}" -v "$keys:/etc/data-service/keys" "$IMAGE" \
        keys create --keys-dir=/etc/data-service/keys
    quiet podman run --rm --pod "$pod" "${hardened[@]}" -v "$keys:/etc/data-service/keys:ro" \
        "$(secret couchdb_admin_password)" "$(secret service_user_password)" "$IMAGE" \
        install --keys-dir=/etc/data-service/keys --models=/etc/data-service/models/sample.yaml \
        --couchdb="http://10.0.2.2:$couch_port" --database=data_service \
        --couchdb-user=admin --couchdb-password-file=/run/secrets/couchdb_admin_password \
        --service-user=data-service --service-user-password-file=/run/secrets/service_user_password 2>&1 | tail -3
}

serve() {
    local flags=()
    # the ops listener and the drain delay, once this image's serve has them (issue 24)
    if quiet podman run --rm "$IMAGE" serve --help 2>/dev/null | grep -q -- --ops-listen; then
        flags+=(--ops-listen=0.0.0.0:9090 --drain-delay=2)
        ops_port=9090
    fi
    quiet podman run -d --name "$pod-sidecar" --pod "$pod" "${hardened[@]}" \
        -v "$keys:/etc/data-service/keys:ro" "$(secret service_user_password)" "$(secret api_tokens)" \
        "$IMAGE" serve --listen=127.0.0.1 --port=8080 \
        --couchdb="http://10.0.2.2:$couch_port" --database=data_service \
        --couchdb-user=data-service --couchdb-password-file=/run/secrets/service_user_password \
        --api-token-file=/run/secrets/api_tokens --models=/etc/data-service/models/sample.yaml \
        --keys-dir=/etc/data-service/keys --drain-timeout=10 "${flags[@]}" >/dev/null
}

healthy() {  # no systemd here: podman never runs the HEALTHCHECK by itself
    local deadline=$((SECONDS + 60))
    until podman healthcheck run "$pod-sidecar" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "not healthy after 60 s" >&2; return 1; }
        sleep 0.5
    done
    podman inspect --format 'health: {{.State.Health.Status}}' "$pod-sidecar"
}

non_root() {  # every process of the container, as the host sees it (init and workers too)
    podman top "$pod-sidecar" huser user pid args | cut -c1-150
    local users
    users=$(podman top "$pod-sidecar" huser | tail -n +2 | sort -u | tr '\n' ' ')
    [ "$users" = "10001 " ] || { echo "processes run as: $users" >&2; return 1; }
}

app_checks() {  # from an application container in the pod, as compose's `app`
    quiet podman run --rm --pod "$pod" "${hardened[@]}" "$(secret api_tokens)" \
        -v "$root/scripts/image_smoke.py:/smoke.py:ro" --entrypoint python "$IMAGE" \
        /smoke.py --data-port=8080 --token-file=/run/secrets/api_tokens ${ops_port:+--ops-port=$ops_port}
}

drain() {
    local at=$SECONDS
    quiet podman stop --time 30 "$pod-sidecar" >/dev/null
    local code
    code=$(podman inspect --format '{{.State.ExitCode}}' "$pod-sidecar")
    podman logs "$pod-sidecar" 2>&1 | grep -E '"(draining|stopped)' | cut -c1-160
    echo "exit $code after $((SECONDS - at)) s"
    [ "$code" = 0 ] || return 1
    ! podman logs "$pod-sidecar" 2>&1 | grep -q '"level":"error"' || { echo "errors in the log" >&2; return 1; }
}

ops_port=
step tools tools
containers_conf
step base env CONTAINERS_CONF="$CONTAINERS_CONF" scripts/image-base.sh
step build build
step couchdb couchdb
step install install
step serve serve
step healthy healthy
step non-root non_root
step app-checks app_checks
step sigterm-drain drain
