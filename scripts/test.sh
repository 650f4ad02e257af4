#!/usr/bin/env bash
# Runs every test suite in the venv whose framework it imports, and fails if any suite failed.
# Usage: scripts/test.sh [suite ...]   suites: core pt tf loadgen containers   (default: all)
# The containers suite builds every imgbench image and runs the compose stack for real on a local
# Docker engine (started here when none runs, and stopped again), with deploy/compose/offline.yml.
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A SUITE_VENV=([core]=core [pt]=pt [tf]=tf [loadgen]=loadgen [containers]=core)
declare -A SUITE_PATHS=(
  [core]="tests/unit tests/integration tests/deploy"
  [pt]="tests/trainer_pt"
  [tf]="tests/trainer_tf"
  [loadgen]="tests/loadgen"
  [containers]="tests/containers"
)
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(core pt tf loadgen containers)

failed=()
for suite in "${suites[@]}"; do
  [[ -v SUITE_VENV[$suite] ]] || { echo "unknown suite '$suite'; known: ${!SUITE_VENV[*]}" >&2; exit 2; }
  paths=()
  for p in ${SUITE_PATHS[$suite]}; do [ -d "$p" ] && paths+=("$p"); done
  [ ${#paths[@]} -eq 0 ] && { echo "suite $suite: no tests yet"; continue; }
  echo "=== suite $suite (.venv/${SUITE_VENV[$suite]}): ${paths[*]}"
  if [ "$suite" = containers ]; then
    # The engine and the local images first; the engine this script started is stopped afterwards.
    if scripts/containers.sh start && scripts/containers.sh prepare; then
      ".venv/${SUITE_VENV[$suite]}/bin/python" -m pytest "${paths[@]}"
      rc=$?
    else
      rc=1
    fi
    scripts/containers.sh stop
  else
    ".venv/${SUITE_VENV[$suite]}/bin/python" -m pytest "${paths[@]}"
    rc=$?
  fi
  # pytest's 5 means "no tests collected": a suite that ran nothing is a failure here.
  [ $rc -ne 0 ] && failed+=("$suite (exit $rc)")
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED suites: ${failed[*]}"
  exit 1
fi
echo "all suites passed: ${suites[*]}"
