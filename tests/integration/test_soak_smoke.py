"""`make soak` for real, shortened: one server (Triton, the quickest to start), two 6-second windows at
a fixed rate (no SLO search), on the digits models the session trained. The command writes its
results file with every window, the server's process tree sampled, and stops its server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from imgbench.paths import project_root, venv_bin

pytestmark = pytest.mark.integration


def test_short_soak_of_one_server(trained, tmp_path: Path) -> None:
    if not (venv_bin("loadgen") / "python").exists() or not (venv_bin("triton") / "python").exists():
        pytest.skip("the loadgen or triton venv is missing; run `scripts/setup.sh loadgen triton`")
    out = tmp_path / "results"
    argv = [
        sys.executable, "-m", "imgbench.bench.soak", "--servers", "triton", "--rate", "20",
        "--minutes", "0.2", "--window-minutes", "0.1", "--warmup-seconds", "1", "--drain-seconds", "1",
        "--sample-seconds", "1", "--run-dir", str(tmp_path / "run"),
        "--model-repository", str(trained.repository), "--dataset", str(trained.dataset), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=project_root())
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (path,) = out.glob("soak-*.json")
    record = json.loads(path.read_text())
    assert record["commit"] and record["hardware"]["cores"]
    entry = record["servers"]["triton"]
    assert entry["status"] == "ok" and entry["rate"] == 20.0 and entry["capacity"].startswith("skipped")
    assert len(entry["windows"]) == 2
    for window in entry["windows"]:
        assert window["n"] > 20 and window["errors"] == {}, window
        assert window["p50_ms"] <= window["p99_ms"]
        # Triton and its python-backend stub(s) at least, each with its resident memory.
        assert window["processes"] >= 2 and window["memory_samples"] >= 3, window
        assert any("triton_python_backend_stub" in name for name in window["max_rss_by_process"]), window
    assert entry["p99_drift"]["windows"] == 2 and entry["p99_drift"]["last_minus_first_ms"] is not None
    assert entry["memory_growth"]["before_load_bytes"] > 0
    assert "p99 drift" in done.stdout and "RSS" in done.stdout
    # Stopped by PID at the end: none of the sampled processes is left.
    assert not [pid for pid in map(int, entry["processes"]) if psutil.pid_exists(pid)], entry["processes"]
