"""scripts/gpu-check.sh without a GPU: it parses, its dry run lists every check as JSON, and its
CPU-only guard prints one "skipped: no CUDA device" JSON line and exits 0 (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


def test_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    compiled = subprocess.run([sys.executable, "-m", "py_compile", str(ROOT / "scripts" / "gpu_check.py")])
    assert compiled.returncode == 0


def test_dry_run_lists_every_check_as_json() -> None:
    result = _run("--dry-run")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["status"] for line in lines} == {"planned"}
    trained = {(line["framework"], line["variant"]) for line in lines if line["check"] == "train"}
    assert ("pytorch", "amp_bf16_channels_last_compile") in trained
    assert ("tensorflow", "mixed_bfloat16_xla") in trained and ("tensorflow", "fp32") in trained
    assert {line["variant"] for line in lines if line["check"] == "ort"} == {"cuda", "tensorrt_fp16"}
    assert any(line["check"] == "vit_latency" and line["batch_size"] == 32 for line in lines)


def test_without_a_cuda_device_it_skips_with_one_json_line(tmp_path: Path) -> None:
    result = _run("--out", str(tmp_path), CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["status"] == "skipped" and record["reason"].startswith("skipped: no CUDA device")
    assert not list(tmp_path.iterdir()), "a skipped run writes no results file"


def test_unknown_option_is_named() -> None:
    result = _run("--nope")
    assert result.returncode == 2 and "'--nope'" in result.stderr
