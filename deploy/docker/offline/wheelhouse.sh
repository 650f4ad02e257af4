#!/usr/bin/env bash
# Fills deploy/docker/wheelhouse/ with every wheel the imgbench images install, downloaded by this
# machine's pip (its cache and its local indexes: torch lies on this disk), so image builds need no
# large downloads. Idempotent: a folder whose inputs did not change is left as it is.
# Usage: deploy/docker/offline/wheelhouse.sh [PYTHON]   (default: python3; needs pip)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${1:-python3}
WHEELHOUSE=deploy/docker/wheelhouse
REQUIREMENTS=(
  services/trainer-pt/requirements.txt
  services/trainer-tf/requirements.txt
  services/serving/torchserve/requirements.txt
  services/serving/tfserving/requirements.txt
  services/serving/triton/requirements.txt
  services/loadgen/requirements.txt
)

log() { printf '\033[1;34m[wheelhouse]\033[0m %s\n' "$*"; }
pin() { grep -hE "^$1==" "${REQUIREMENTS[@]}" | head -1; }
download() {  # pip's warnings about this machine's optional local indexes are noise here
  "$PYTHON" -m pip download --disable-pip-version-check -q -d "$@" 2> >(grep -v '^WARNING: Location' >&2)
}

fill() {  # fill FOLDER ARGS...: download unless the stamp says these inputs were downloaded already
  local folder=$WHEELHOUSE/$1; shift
  local digest stamp=$folder/.stamp
  # The inputs: the arguments (with a requirements file's content, not its temporary name).
  digest=$(for arg in "$@"; do if [ -f "$arg" ]; then cat "$arg"; else echo "$arg"; fi; done \
    | cat - pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    log "$folder is up to date"
    return 0
  fi
  log "downloading into $folder"
  download "$folder" "$@"
  echo "$digest" > "$stamp"
}

fill torch "$(pin torch)" "$(pin torchvision)"
fill tensorflow "$(pin tensorflow)"
# Everything else: each service's pinned file on its own (their pins differ: one resolve per image;
# local -e packages are built from source in the images) and the core with its clients extra.
filtered=$(mktemp -d)
trap 'rm -rf "$filtered"' EXIT
python_args=()
for file in "${REQUIREMENTS[@]}"; do
  grep -vE '^\s*(-e|#|$)' "$file" > "$filtered/$(echo "$file" | tr / _)"
  python_args+=("$filtered/$(echo "$file" | tr / _)")
done
fill_python() {
  for file in "${python_args[@]}"; do download "$WHEELHOUSE/python" -r "$file"; done
  download "$WHEELHOUSE/python" ".[clients]"
}
digest=$(cat "${python_args[@]}" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$WHEELHOUSE/python/.stamp" ] && [ "$(cat "$WHEELHOUSE/python/.stamp")" = "$digest" ]; then
  log "$WHEELHOUSE/python is up to date"
else
  log "downloading into $WHEELHOUSE/python"
  fill_python
  echo "$digest" > "$WHEELHOUSE/python/.stamp"
fi
# The framework wheels live in their own folders (their own cache keys): no copies in python/.
for wheel in "$WHEELHOUSE"/torch/*.whl "$WHEELHOUSE"/tensorflow/*.whl "$WHEELHOUSE"/python/imgbench-*; do
  [ -e "$wheel" ] && rm -f "$WHEELHOUSE/python/$(basename "$wheel")"
done
rm -f "$WHEELHOUSE"/python/imgbench-*
du -sh "$WHEELHOUSE"/* | sed 's/^/[wheelhouse] /'
