"""--device cuda without a GPU: one error line naming what PyTorch saw, never a run on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import run_trainer

from imgbench.devices import require_gpu
from imgbench.errors import ImgbenchError


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
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


def test_cuda_provider_figures_go_into_the_manifest_when_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import onnxruntime as ort

    from imgbench.onnx_gpu import DETAILS_KEY, cuda_provider_details

    class FakeSession:  # what onnxruntime-gpu gives on a GPU, without one
        def __init__(self, path: str, providers: list[str]) -> None:
            self.providers = providers

        def get_providers(self) -> list[str]:
            return list(self.providers)

    reference = np.eye(4, dtype=np.float32)
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    details = cuda_provider_details(Path("m.onnx"), lambda session: reference + 1e-4, reference)[DETAILS_KEY]
    assert details["status"] == "ok" and details["top1_agreement"] == 1.0
    assert abs(details["max_abs_logit_diff"] - 1e-4) < 1e-6
    # ONNX Runtime quietly on the CPU instead: said, not measured.
    monkeypatch.setattr(ort, "InferenceSession", lambda path, providers: FakeSession(path, providers[1:]))
    skipped = cuda_provider_details(Path("m.onnx"), lambda session: reference, reference)[DETAILS_KEY]
    assert skipped["status"] == "skipped" and "did not start" in skipped["reason"]
