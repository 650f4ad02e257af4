"""DDP: two CPU processes under torchrun (gloo) train one epoch together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RECIPE, trainer_env

from imgbench.training_log import read_epochs

pytestmark = pytest.mark.slow


def test_two_process_ddp_epoch(digits_small: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "trainer_pt", "train", "--data-path", str(digits_small), *RECIPE, "--epochs", "1",
        "--output-dir", str(run_dir), "--no-export",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=trainer_env(), timeout=900, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch_size"] == 64
    records = read_epochs(run_dir)
    assert [r.epoch for r in records] == [1], "only rank 0 writes figures, once per epoch"
    # Sharded evaluation counts every val image once (no padding): top-1 is a multiple of 1/n_val.
    n_val = sum(1 for _ in (digits_small / "val").rglob("*.png"))
    assert records[0].top1 * n_val == pytest.approx(round(records[0].top1 * n_val), abs=1e-6)
    assert (run_dir / "checkpoint_last.pt").exists()
