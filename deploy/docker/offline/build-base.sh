#!/usr/bin/env bash
# Builds the local Python 3.11 base image that stands in for `python:3.11-slim-bookworm` where no image
# registry is reachable (this project's test machines): Debian bookworm from Debian's packages
# (debootstrap), a venv at /usr/local so `python` and `pip` sit where the official image has them, and
# this machine's CA bundle so pip inside builds reaches the package registry. Reused when present.
# Usage: deploy/docker/offline/build-base.sh [IMAGE]   (default: imgbench-local/python:3.11-bookworm)
set -euo pipefail
IMAGE=${1:-imgbench-local/python:3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf '\033[1;34m[base]\033[0m %s\n' "$*"; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE exists: reused"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/imgbench-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap bookworm into $rootfs (about 3 minutes)"
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"

# The host's CA bundle first: the registry is reached through this machine's TLS proxy.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# bookworm, -updates and -security as in the official image (debootstrap writes bookworm only).
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/"
  rm -f "$rootfs/etc/apt/sources.list"
fi
# `python`/`pip` on PATH at /usr/local/bin as in the official image (pip installs go into the venv,
# so Debian's externally-managed system Python is left alone). A clean environment: the host's pip
# settings (extra indexes on its own disk) mean nothing inside the image.
in_rootfs() { env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  PIP_CERT=/etc/ssl/certs/ca-certificates.crt chroot "$rootfs" "$@"; }
in_rootfs python3 -m venv /usr/local
in_rootfs /usr/local/bin/python -m pip --disable-pip-version-check -q --no-cache-dir install --upgrade pip==25.3
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

log "importing as $IMAGE"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  --message "imgbench local stand-in for python:3.11-slim-bookworm (debootstrap)" \
  - "$IMAGE" >/dev/null
log "built $IMAGE"
