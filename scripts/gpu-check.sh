#!/usr/bin/env bash
# The GPU checks, on one GPU, in at most 8 minutes (an H200): CUDA training of ResNet-50 at 224 px on
# synthetic data in both frameworks (fp32, AMP bf16, channels_last, torch.compile, XLA; images/s and
# peak memory each), ONNX Runtime's CUDA and TensorRT execution providers against PyTorch (parity and
# latency at batch 1 and 32), and ViT-B/16 latency at batch 32. One JSON line per check on stdout; all
# of them in benchmarks/results/gpu-<UTC time>.json.
#
# Usage: scripts/gpu-check.sh [--dry-run] [--steps N] [--out DIR]
#   --dry-run   print the planned checks (status "planned") and exit 0; needs no GPU
#   --steps N   timed training steps per variant (default 200)
#   --out DIR   where the results file goes (default benchmarks/results)
# Interpreters: PT_PYTHON (default .venv/pt/bin/python; the ORT check needs onnxruntime-gpu there, see
# services/trainer-pt/requirements-gpu.txt) and TF_PYTHON (default .venv/tf/bin/python, with
# tensorflow[and-cuda], services/trainer-tf/requirements-gpu.txt).
# Without a CUDA device (no nvidia-smi, no GPU listed, or CUDA_VISIBLE_DEVICES empty or -1) it prints
# one "skipped: no CUDA device" line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
steps=200
out_dir=benchmarks/results
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --steps) steps="$2"; shift ;;
    --out) out_dir="$2"; shift ;;
    *) echo "unknown option '$1'; known: --dry-run --steps N --out DIR" >&2; exit 2 ;;
  esac
  shift
done
PT_PYTHON="${PT_PYTHON:-.venv/pt/bin/python}"
TF_PYTHON="${TF_PYTHON:-.venv/tf/bin/python}"
CHECKS=scripts/gpu_check.py
# The whole run stays within 8 minutes: each check gets a share, a check past it is reported as such.
declare -A BUDGET_S=([torch-train]=200 [tf-train]=160 [ort]=70 [vit]=30)
ORDER=(torch-train tf-train ort vit)

json_line() { # status reason: one line of JSON without needing python
  printf '{"check": "gpu-check", "status": "%s", "reason": "%s"}\n' "$1" "$2"
}

no_cuda_reason() { # prints why there is no CUDA device, or nothing when there is one
  if [ "${CUDA_VISIBLE_DEVICES+set}" = set ] && { [ -z "$CUDA_VISIBLE_DEVICES" ] || [ "$CUDA_VISIBLE_DEVICES" = "-1" ]; }; then
    echo "CUDA_VISIBLE_DEVICES='${CUDA_VISIBLE_DEVICES}' hides every GPU"
  elif ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "nvidia-smi not found"
  elif ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "nvidia-smi lists no GPU"
  fi
}

if [ "$dry_run" = 1 ]; then
  python3 -m py_compile "$CHECKS"
  python3 "$CHECKS" plan
  exit 0
fi

reason="$(no_cuda_reason)"
if [ -n "$reason" ]; then
  json_line skipped "skipped: no CUDA device ($reason)"
  exit 0
fi

mkdir -p "$out_dir"
result="$out_dir/gpu-$(date -u +%Y%m%dT%H%M%SZ).json"
lines="$(mktemp)"
trap 'rm -f "$lines"' EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader |
  head -1 | awk -F', ' '{printf "{\"check\": \"device\", \"status\": \"ok\", \"device\": \"%s\", \"driver\": \"%s\", \"memory\": \"%s\"}\n", $1, $2, $3}' |
  tee -a "$lines"

failed=0
for check in "${ORDER[@]}"; do
  python="$PT_PYTHON"
  [ "$check" = tf-train ] && python="$TF_PYTHON"
  if [ ! -x "$python" ]; then
    json_line skipped "$check: no interpreter at $python" | tee -a "$lines"
    continue
  fi
  rc=0
  timeout "${BUDGET_S[$check]}" "$python" "$CHECKS" "$check" --steps "$steps" | tee -a "$lines" || rc=$?
  if [ "$rc" = 124 ]; then
    json_line failed "$check: over its ${BUDGET_S[$check]} s budget" | tee -a "$lines"
  fi
  [ "$rc" != 0 ] && failed=1
done

# One JSON document: {"lines": [...]} keeps every check's line as printed.
python3 - "$lines" "$result" <<'EOF'
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
with open(sys.argv[2], "w") as out:
    json.dump({"checks": lines}, out, indent=2)
    out.write("\n")
EOF
echo "wrote $result" >&2
exit "$failed"
