#!/usr/bin/env bash
# make image-test: build the container image with podman and smoke-test it the way
# docker/compose.yaml runs it, against Apache CouchDB 3.5.2 from the shared test script.
#
#   1. podman, runc, debootstrap (apt-get, when missing; needs root)
#   2. the base image: the stand-in scripts/image-base.sh builds (cached in podman's store)
#   3. the image: podman build --format docker (keeps HEALTHCHECK) --pull=never, from wheels
#      the host's pip makes; size <= 200 MB
#   4. CouchDB 3.5.2 on the host; keysets and `install` (as the server admin) in containers
#   5. the sidecar in a pod (its own network namespace, as in compose or Kubernetes) with
#      the settings docker/compose.yaml gives it (scripts/compose_flags.py reads them):
#      read-only root, all capabilities dropped, no-new-privileges, an init, uid 10001,
#      loopback listener, token file, secrets as read-only files, its serve command
#   6. checks: healthy (podman healthcheck run, polled), non-root, loopback only, 401
#      without a token, create/read round trip (scripts/image_smoke.py in an app container
#      in the pod), compose's app stops on SIGTERM, then the sidecar's SIGTERM: drained, exit 0
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
    # the wheel and its dependencies, by the host's pip (its configuration and cache), so the
    # build reads them from a mount instead of downloading them again
    "$root/.venv/bin/pip" wheel --quiet --disable-pip-version-check -c constraints.txt -w "$work/wheels" . \
        2> >(grep -v '^WARNING: Location' >&2)
    echo "wheels: $(ls "$work/wheels" | wc -l) files, $(du -sm "$work/wheels" | cut -f1) MB"
    podman build --quiet --pull=never --format docker --layers=false \
        --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        --build-arg WHEELS=/wheels -v "$work/wheels:/wheels:ro" \
        -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
        -t "$IMAGE" . >/dev/null
    # the image this build replaced, left untagged: only ours (by label), only untagged ones
    podman image prune --force --filter label=org.opencontainers.image.title=data-service >/dev/null
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

# compose's settings for a service, as podman run arguments (scripts/compose_flags.py)
compose() { mapfile -t "$1" < <("$root/.venv/bin/python" scripts/compose_flags.py "$2" "$3"); }
quiet() {  # podman says it cannot reach systemd for the healthcheck timers: known, not an error here
    "$@" 2> >(grep -v 'systemd connection' >&2)
}
secret() { echo "-v=$work/secrets/$1:/run/secrets/$1:ro"; }

install() {  # compose's install service: keysets, then `data-service install` as the server admin
    local hardening command
    compose hardening flags install
    compose command command install
    command=("${command[@]//couchdb:5984/couchdb:$couch_port}")
    # the pod: one network namespace for the sidecar and its app; "couchdb" is the host's
    # loopback (slirp4netns maps 10.0.2.2 to it)
    podman pod create --name "$pod" --network slirp4netns:allow_host_loopback=true \
        --add-host=couchdb:10.0.2.2 >/dev/null
    # started here, detached from this script's output: its infra process lives as long as
    # the pod and would hold open any pipe it inherited
    podman pod start "$pod" >/dev/null 2>&1 </dev/null
    podman volume create "$keys" >/dev/null
    quiet podman run --rm --pod "$pod" "${hardening[@]}" -v "$keys:/etc/data-service/keys" \
        "$(secret couchdb_admin_password)" "$(secret service_user_password)" \
        "${command[0]}" "$IMAGE" "${command[@]:1}" 2>&1 | grep -v '^warm ' | tail -6
}

serve() {  # compose's data-service service, CouchDB's port changed to the one started here
    local hardening command args=() unknown=()
    compose hardening flags data-service
    compose command command data-service
    local help
    help=$(quiet podman run --rm "$IMAGE" serve --help 2>/dev/null)
    for arg in "${command[@]}"; do
        arg=${arg/couchdb:5984/couchdb:$couch_port}
        # flags of issue 24's ops work, used by compose and Kubernetes: kept once this
        # image's serve has them, named here until then
        if [[ $arg == --* ]] && ! grep -q -- "${arg%%=*}" <<<"$help"; then
            unknown+=("$arg")
            continue
        fi
        args+=("$arg")
    done
    if grep -q -- --ops-listen <<<"$help"; then  # the Kubernetes manifests' ops port
        args+=(--ops-listen=0.0.0.0:9090)
        ops_port=9090
    fi
    [ ${#unknown[@]} -eq 0 ] || echo "not in this image's serve yet, left out: ${unknown[*]}"
    quiet podman run -d --name "$pod-sidecar" --pod "$pod" "${hardening[@]}" \
        -v "$keys:/etc/data-service/keys:ro" "$(secret service_user_password)" "$(secret api_tokens)" \
        "$IMAGE" "${args[@]}" >/dev/null
    echo "serve ${args[*]}" | cut -c1-300
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

app_checks() {  # from an application container in the pod, with compose's `app` settings
    local hardening
    compose hardening flags app
    quiet podman run --rm --pod "$pod" "${hardening[@]}" "$(secret api_tokens)" \
        -v "$root/scripts/image_smoke.py:/smoke.py:ro" --entrypoint python "$IMAGE" \
        /smoke.py --data-port=8080 --token-file=/run/secrets/api_tokens ${ops_port:+--ops-port=$ops_port}
}

app_sigterm() {  # compose's `app` command itself (this image has no curl: each call fails) stops on SIGTERM
    local hardening command at=$SECONDS code
    compose hardening flags app
    compose command command app
    quiet podman run -d --name "$pod-app" --pod "$pod" "${hardening[@]}" "$(secret api_tokens)" \
        "${command[0]}" "$IMAGE" "${command[@]:1}" >/dev/null
    # its first output (a failed call) comes after its trap is set: a SIGTERM before that
    # would test the shell's default, not the command (seen on a loaded machine: exit 2)
    for _ in $(seq 50); do
        [ -n "$(podman logs "$pod-app" 2>&1)" ] && break
        sleep 0.2
    done
    quiet podman stop --time 20 "$pod-app" >/dev/null
    code=$(podman inspect --format '{{.State.ExitCode}}' "$pod-app")
    echo "app: exit $code after $((SECONDS - at)) s; $(podman logs "$pod-app" 2>&1 | grep -c 'app: stopping') 'stopping' line"
    [ "$code" = 0 ] && [ $((SECONDS - at)) -lt 10 ]
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
step app-sigterm app_sigterm
step sigterm-drain drain
