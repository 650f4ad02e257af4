"""PyTorch → TFLite (trainer-pt --tflite, litert-torch): fp32 and int8 of the session's trained model
gated on the whole val split, checked again here against ONNX Runtime, with the interpreter's memory;
a model the converter cannot take is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, TrainedRun
from torch import nn
from torch.utils.data import DataLoader
from trainer_pt.data import load_splits
from trainer_pt.edge import convert_fp32, quantize_int8, tflite_logits
from trainer_pt.export import _onnx_logits, load_trained

from imgbench.errors import ImgbenchError
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository
from imgbench.trainer_cli import DEFAULT_QUANTIZED_MIN_AGREEMENT
from imgbench.validation import DEFAULT_MAX_ABS_DIFF, DEFAULT_MIN_AGREEMENT

pytestmark = pytest.mark.slow
MODEL = "pt_mobilenet_v3_small"


def test_tflite_exports_pass_their_gates_and_record_memory(trained: TrainedRun) -> None:
    repo = ModelRepository(trained.repo)
    manifest = load_manifest(repo.manifest_path(MODEL))
    fp32, int8 = manifest.exports["tflite_fp32"], manifest.exports["tflite_int8"]
    for variant, record in (("fp32", fp32), ("int8", int8)):
        assert record.status == "ok" and record.n == manifest.dataset.num_eval == 359
        assert record.path == repo.tflite(MODEL, variant).relative_to(repo.root).as_posix()
        assert repo.tflite(MODEL, variant).stat().st_size == record.size_bytes
        assert record.latency_ms_per_image is not None and record.latency_ms_per_image > 0
        assert record.details["layout"] == "NCHW" and record.details["batch"] == 1
        memory = record.details["memory"]
        assert memory["model_bytes"] == record.size_bytes and memory["peak_growth_bytes"] > 0
    assert fp32.top1_agreement is not None and fp32.top1_agreement >= DEFAULT_MIN_AGREEMENT
    assert fp32.max_abs_logit_diff is not None and fp32.max_abs_logit_diff <= DEFAULT_MAX_ABS_DIFF
    assert fp32.accuracy == manifest.exports["onnx"].accuracy
    # int8: gated on agreement only; a quarter of the weights, less memory.
    assert int8.top1_agreement is not None and int8.top1_agreement >= DEFAULT_QUANTIZED_MIN_AGREEMENT
    assert int8.size_bytes is not None and fp32.size_bytes is not None
    assert int8.size_bytes < 0.4 * fp32.size_bytes
    assert int8.details["memory"]["peak_growth_bytes"] < fp32.details["memory"]["peak_growth_bytes"]


def test_tflite_fp32_agrees_with_onnx_runtime_on_the_val_split(trained: TrainedRun) -> None:
    """Independently of the gate: the published flatbuffer against the published ONNX model."""
    repo = ModelRepository(trained.repo)
    manifest = load_manifest(repo.manifest_path(MODEL))
    resize = load_trained(trained.run_dir).config.get("val_resize_size")
    val = load_splits(trained.data, IMAGE_SIZE, check=False, val_resize_size=resize).val
    loader = DataLoader(val, batch_size=64, shuffle=False)
    onnx = _onnx_logits(repo.root / manifest.exports["onnx"].path, loader)
    edge, latency = tflite_logits(repo.tflite(MODEL, "fp32"), loader, threads=1)
    assert edge.shape == onnx.shape == (359, 10) and latency > 0
    assert (edge.argmax(axis=1) == onnx.argmax(axis=1)).mean() == 1.0
    assert float(np.abs(edge - onnx).max()) <= DEFAULT_MAX_ABS_DIFF


class _DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.export cannot trace it."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = image.mean(dim=(2, 3))
        return pooled if image.sum() > 0 else -pooled


def test_a_model_the_converter_cannot_take_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImgbenchError, match=r"PyTorch → TFLite conversion \(litert-torch\) failed: \w+"):
        convert_fp32(_DataDependent(), 8, tmp_path / "model_fp32.tflite")
    assert not (tmp_path / "model_fp32.tflite").exists()
    with pytest.raises(ImgbenchError, match="needs calibration images"):
        quantize_int8(tmp_path / "model_fp32.tflite", [], tmp_path / "model_int8.tflite")
