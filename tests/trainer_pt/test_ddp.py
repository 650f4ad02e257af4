"""DDP: two CPU processes under torchrun (gloo) train one epoch together, and trainer-pt's distributed
path trains the same weights as one process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


WORKER = Path(__file__).with_name("ddp_worker.py")
GLOBAL_BATCH = 16


def test_two_processes_train_the_weights_of_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    """trainer-pt's process group, optimizer (lr scaled by world size), per-step cosine and training
    loop under torchrun on 2 gloo processes end where 1 process with the same global batch ends. The
    model has no batch norm (per-rank statistics make equality impossible there, with or without DDP)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    runs = {"ddp": [*torchrun, str(WORKER)], "single": [sys.executable, str(WORKER)]}
    for name, argv in runs.items():
        result = subprocess.run(
            [*argv, str(tmp_path / f"{name}.npz"), str(GLOBAL_BATCH)],
            capture_output=True, text=True, env=trainer_env(), timeout=600, cwd="/",
        )  # fmt: skip
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    ddp, single = np.load(tmp_path / "ddp.npz"), np.load(tmp_path / "single.npz")
    assert (int(ddp["world_size"]), int(single["world_size"])) == (2, 1)
    assert int(ddp["steps"]) == int(single["steps"]) == 4
    names = [name for name in single.files if name.startswith("param")]
    assert names and any(not np.allclose(single[n], 0) for n in names)
    for name in names:
        # float32 sums in another order (all-reduce of two half-batch means): round-off only.
        np.testing.assert_allclose(ddp[name], single[name], rtol=1e-5, atol=1e-6, err_msg=name)
