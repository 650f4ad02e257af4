"""Headless runs of the real load generator process against real gRPC servers on 127.0.0.1: results,
correctness under load, coordinated omission, distributed merging, faults and preflight errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from lg_helpers import MODEL, run_loadgen

pytestmark = pytest.mark.integration


def test_closed_loop_run_reports_percentiles_and_checks_every_answer(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    server = start_fake_triton()
    run = run_loadgen(
        tmp_path, "--backend", "triton", "--target", server.target, "--model", MODEL,
        "--model-repository", str(fake_repository), "--batch-size", "4", "-u", "2",
        "--step-duration", "4", "--warmup", "1", "--drain", "1",
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    row = run.row()
    assert row["n"] > 50
    assert row["errors"] == 0 and row["incorrect"] == 0, row
    assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["p999_ms"] <= row["max_ms"]
    assert row["images_per_s"] == pytest.approx(4 * row["throughput_rps"], rel=0.01)
    assert row["window_s"] == pytest.approx(3.0, abs=0.5)
    facts = run.results["preflight"]
    # The idle pass kept exactly the images the model gets right, so any wrong answer would be a fault.
    assert 0 < facts["pool_kept"] <= facts["pool_images"]
    assert facts["pool_kept"] == facts["pool_images"] - facts["misclassified_at_rest"]
    assert run.results["hardware"]["cores"] >= 1 and run.results["config"]["backend"] == "triton"
    header = run.csv.splitlines()[0].split(",")
    assert {"n", "p99_ms", "p999_ms", "incorrect", "errors", "throughput_rps", "cpu"} <= set(header)
    assert len(run.csv.splitlines()) == 2
