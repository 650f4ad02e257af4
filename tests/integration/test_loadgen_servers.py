"""The load generator (its own venv, run as a process exactly as users run it) against each of the
three real servers started by the stack runner: a headless run has n, percentiles, no errors and no
wrong answers on the digits models the session trained."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imgbench.paths import project_root, venv_bin

pytestmark = pytest.mark.integration

# (server, framework prefix): one model per server, as each serves it natively.
LOAD_CASES = [("torchserve", "pt"), ("triton", "pt"), ("tfserving", "tf")]


@pytest.mark.parametrize(("server", "prefix"), LOAD_CASES, ids=[s for s, _ in LOAD_CASES])
def test_headless_run_against_real_server(server: str, prefix: str, serving, tmp_path: Path) -> None:
    python = venv_bin("loadgen") / "python"
    if not python.exists():
        pytest.skip("the loadgen venv is missing; run `scripts/setup.sh loadgen`")
    model = serving.trained.models[prefix]
    argv = [
        str(python), "-m", "loadgen", "--headless", "--only-summary", "--backend", server,
        "--target", serving.target(server), "--model", model,
        "--model-repository", str(serving.trained.repository), "--dataset", str(serving.trained.dataset),
        "--batch-size", "2", "-u", "2", "--images", "128", "--step-duration", "5", "--warmup", "1",
        "--drain", "2", "--metrics-port", "0", "--results-dir", str(tmp_path), "--run-id", server,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=project_root())
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((tmp_path / f"{server}.json").read_text())
    (point,) = results["points"]
    assert point["n"] >= 20, point
    assert point["errors"] == 0 and point["incorrect"] == 0, point
    assert point["p50_ms"] <= point["p90_ms"] <= point["p99_ms"] <= point["p999_ms"] <= point["max_ms"]
    assert point["images_per_second"] == pytest.approx(2 * point["throughput_rps"], rel=0.01)
    # The pool is real validation images the idle server answered right (most of them, trained 1 epoch).
    assert results["preflight"]["pool_kept"] >= 10
    # The server as it identified itself: the native TF Serving is the stand-in, and the results say so.
    assert point["server"]["backend"] == server
    assert point["server"]["stand_in"] == (server == "tfserving"), point["server"]
    if server == "triton":
        assert point["server"]["implementation"] == "Triton" and point["server"]["version"], point["server"]
