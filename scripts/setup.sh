#!/usr/bin/env bash
# Builds everything imgbench needs on this machine, idempotently:
#   Debian packages the tests use (Docker Engine and Compose v2 included: scripts/containers.sh),
#   and one virtual environment per service under .venv/.
# Each venv is rebuilt only when its requirements file (or the core's pyproject) changed.
# Usage: scripts/setup.sh [venv ...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# name -> requirements file (the core venv has none: it installs the core with its dev extra)
declare -A VENV_REQUIREMENTS=(
  [core]=""
  [pt]="services/trainer-pt/requirements.txt"
  [tf]="services/trainer-tf/requirements.txt"
  [torchserve]="services/serving/torchserve/requirements.txt"
  [triton]="services/serving/triton/requirements.txt"
  [tfserving]="services/serving/tfserving/requirements.txt"
  [loadgen]="services/loadgen/requirements.txt"
)
ALL_VENVS=(core pt tf torchserve triton tfserving loadgen)
# Extras of the core each venv installs (default: dev). Venvs that talk to model servers get `clients`.
declare -A VENV_EXTRAS=([core]="dev,clients,report" [loadgen]="dev,clients")

install_debian_packages() {
  # nghttp2-client: h2load, the independent client of the loadgen benchmark (make bench).
  local wanted=(prometheus prometheus-pushgateway docker-compose nghttp2-client)
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_venv() {
  local name=$1 requirements=${VENV_REQUIREMENTS[$1]}
  local venv=".venv/$name" stamp=".venv/$name/.imgbench-stamp"
  local digest
  digest=$(cat pyproject.toml ${requirements:+"$requirements"} | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    log "venv $name is up to date"
    return 0
  fi
  log "building venv $name${requirements:+ from $requirements}"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
  "${pip[@]}" install --upgrade pip==25.3 setuptools wheel
  if [ -n "$requirements" ]; then
    "${pip[@]}" install -r "$requirements"
  fi
  # Every venv gets the core (and pytest, since each framework's tests run in its own venv).
  "${pip[@]}" install -e "$ROOT[${VENV_EXTRAS[$name]:-dev}]"
  echo "$digest" > "$stamp"
}

# The clients' gRPC stubs (TF Serving, TorchServe) into the git-ignored imgbench/clients/_generated/.
# Needs the tfserving venv (TF holds the TF Serving descriptors) and the torchserve venv (its jar holds
# the .proto files); generated in the core venv by grpcio-tools. Redone only when an input changed.
generate_grpc_stubs() {
  local out=imgbench/clients/_generated stamp=imgbench/clients/_generated/.imgbench-stamp
  local jar=.venv/torchserve/lib/python3.11/site-packages/ts/frontend/model-server.jar
  local descriptors=build/protos/tfserving.pb
  for venv in core tfserving torchserve; do
    if [ ! -f ".venv/$venv/.imgbench-stamp" ]; then
      log "gRPC stubs not generated yet: venv $venv is missing (scripts/setup.sh core torchserve tfserving)"
      return 0
    fi
  done
  local digest
  digest=$(cat .venv/{core,tfserving,torchserve}/.imgbench-stamp imgbench/clients/stubgen.py | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    log "gRPC stubs are up to date"
    return 0
  fi
  log "generating gRPC stubs into $out"
  .venv/tfserving/bin/python -m imgbench.clients.stubgen dump-tfserving --out "$descriptors"
  .venv/core/bin/python -m imgbench.clients.stubgen generate \
    --descriptor-set "$descriptors" --torchserve-jar "$jar" --out "$out"
  echo "$digest" > "$stamp"
}

main() {
  local venvs=("$@")
  [ ${#venvs[@]} -eq 0 ] && venvs=("${ALL_VENVS[@]}")
  install_debian_packages
  # The containers suite's engine: docker.io, debootstrap, the pinned Compose v2 plugin.
  scripts/containers.sh install
  mkdir -p .venv
  for name in "${venvs[@]}"; do
    [[ -v VENV_REQUIREMENTS[$name] ]] || { echo "unknown venv '$name'; known: ${ALL_VENVS[*]}" >&2; exit 2; }
    build_venv "$name"
  done
  generate_grpc_stubs
  log "done"
}

main "$@"
