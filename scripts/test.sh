#!/usr/bin/env bash
# Runs every test suite in the venv whose framework it imports, and fails if any suite failed.
# Usage: scripts/test.sh [suite ...]   suites: core pt tf loadgen   (default: all)
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A SUITE_VENV=([core]=core [pt]=pt [tf]=tf [loadgen]=loadgen)
declare -A SUITE_PATHS=(
  [core]="tests/unit tests/integration tests/deploy"
  [pt]="tests/trainer_pt"
  [tf]="tests/trainer_tf"
  [loadgen]="tests/loadgen"
)
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(core pt tf loadgen)

failed=()
for suite in "${suites[@]}"; do
  [[ -v SUITE_VENV[$suite] ]] || { echo "unknown suite '$suite'; known: ${!SUITE_VENV[*]}" >&2; exit 2; }
  paths=()
  for p in ${SUITE_PATHS[$suite]}; do [ -d "$p" ] && paths+=("$p"); done
  [ ${#paths[@]} -eq 0 ] && { echo "suite $suite: no tests yet"; continue; }
  echo "=== suite $suite (.venv/${SUITE_VENV[$suite]}): ${paths[*]}"
  ".venv/${SUITE_VENV[$suite]}/bin/python" -m pytest "${paths[@]}"
  rc=$?
  # pytest's 5 means "no tests collected": a suite that ran nothing is a failure here.
  [ $rc -ne 0 ] && failed+=("$suite (exit $rc)")
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED suites: ${failed[*]}"
  exit 1
fi
echo "all suites passed: ${suites[*]}"
