#!/usr/bin/env bash
# Build the stand-in for the Dockerfile's base image where no container registry can be
# reached: Debian bookworm (debootstrap, minbase) with Debian's Python 3.11 (3.11.2) from
# the apt mirror this machine is configured with, imported into podman as
# docker.io/library/python:3.11-slim. It is NOT the official image (that one builds its
# own CPython under /usr/local); the label data-service.base says so. Kept in podman's
# store: a second run does nothing unless IMAGE_BASE_REBUILD=1.
#
#   scripts/image-base.sh     # needs root, debootstrap and podman (scripts/image-test.sh installs them)
set -euo pipefail
NAME=docker.io/library/python:3.11-slim
STAND_IN="debian-bookworm-python3 (Debian's Python 3.11 from scripts/image-base.sh, a stand-in, not the official image)"

if [ "${IMAGE_BASE_REBUILD:-}" != 1 ] && podman image exists "$NAME"; then
    echo "base: $NAME present ($(podman image inspect --format '{{index .Labels "data-service.base"}}' "$NAME" || true))"
    exit 0
fi

# the configured bookworm mirror, as apt itself reports it
mirror=$(apt-cache policy | awk '$3 == "bookworm/main" && $2 ~ /^https?:/ {print $2; exit}')
[ -n "$mirror" ] || { echo "image-base: no bookworm mirror in apt's sources (run apt-get update?)" >&2; exit 2; }

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/data-service-base.XXXXXX")
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT

# One pass, Python included. The packages come from apt's own cache of .deb files where it
# has them (machines of this kind ship with a large one); what it downloads stays there for
# the next run. Debian's point release only: no bookworm-security updates in the stand-in.
echo "base: debootstrap bookworm from $mirror, with Debian's python3"
debootstrap --variant=minbase --cache-dir=/var/cache/apt/archives \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    exit 1
}
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED  # the official image's Python has no such marker
find "$rootfs" -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
tar --numeric-owner -C "$rootfs" -c . | podman import --quiet \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --change "LABEL data-service.base=\"$STAND_IN\"" - "$NAME" >/dev/null
podman image prune --force --filter label=data-service.base >/dev/null  # a stand-in this one replaced
echo "base: $NAME = $STAND_IN, $(podman image inspect --format '{{.Size}}' "$NAME" | awk '{printf "%.0f MB", $1/1e6}')"
