"""--device cuda without a GPU: one error line naming what PyTorch saw, never a run on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import run_trainer

from imgbench.devices import require_gpu
from imgbench.errors import ImgbenchError

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")


def test_device_cuda_without_a_gpu_fails_before_training(digits_small: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_trainer(
        "train", "--data-path", str(digits_small), "--device", "cuda", "--epochs", "1",
        "--output-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "--device cuda" in line and "PyTorch sees no GPU" in line and "--device cpu" in line
    assert not list(run_dir.glob("checkpoint*.pt"))


def test_require_gpu_names_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ImgbenchError, match="CUDA_VISIBLE_DEVICES=''"):
        require_gpu("cuda", 0, "PyTorch")
    require_gpu("auto", 0, "PyTorch")  # auto and cpu never raise
    require_gpu("cpu", 0, "PyTorch")
    require_gpu("cuda", 1, "PyTorch")
