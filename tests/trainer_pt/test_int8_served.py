"""INT8 ONNX: gated like the other exports (``--quantized-min-agreement``, the flag trainer-tf's TFLite
int8 uses), and once it passed, published as its own Triton model ``<model>_int8``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGE_SIZE, TrainedRun

from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository
from imgbench.trainer_cli import DEFAULT_QUANTIZED_MIN_AGREEMENT
from imgbench.validation import ExportGateError

pytestmark = pytest.mark.slow
MODEL = "pt_mobilenet_v3_small"
INT8_MODEL = f"{MODEL}_int8"


def test_int8_passed_its_gate_and_is_a_triton_model(trained: TrainedRun) -> None:
    import onnx
    import onnxruntime as ort

    repo = ModelRepository(trained.repo)
    manifest = load_manifest(repo.manifest_path(MODEL))
    int8 = manifest.exports["onnx_int8"]
    # The default gate, below what this model measured: the export passed and says it is served.
    assert int8.details["gate"] == {"min_agreement": DEFAULT_QUANTIZED_MIN_AGREEMENT, "max_abs_diff": None}
    assert int8.top1_agreement is not None and int8.top1_agreement >= DEFAULT_QUANTIZED_MIN_AGREEMENT
    served = int8.details["served"]
    assert served["model"] == INT8_MODEL and served["server"] == "triton"
    served_onnx = trained.repo / served["path"]
    assert served_onnx == repo.triton_onnx(INT8_MODEL, manifest.version)
    assert served_onnx.read_bytes() == (trained.repo / int8.path).read_bytes()
    config = repo.triton_config(INT8_MODEL).read_text()
    assert f'name: "{INT8_MODEL}"' in config and 'platform: "onnxruntime_onnx"' in config
    assert f"dims: [ 3, {IMAGE_SIZE}, {IMAGE_SIZE} ]" in config and "KIND_CPU" in config
    gpu = (repo.triton_model_dir(INT8_MODEL) / "configs" / "gpu.pbtxt").read_text()
    assert "KIND_GPU" in gpu and "tensorrt" not in gpu  # TensorRT's FP16 engines are for float graphs
    # The served file is the quantized graph, not a copy of the float one.
    session = ort.InferenceSession(str(served_onnx), providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(served_onnx)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    (logits,) = session.run(["logits"], {"image": np.zeros((3, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)})
    assert logits.shape == (3, 10)
    # The trainer owns the served name: the repository lists the variant next to its model.
    assert repo.served_triton_models() == {MODEL: MODEL, INT8_MODEL: MODEL}


def test_a_gate_above_the_measured_agreement_fails_the_export(trained: TrainedRun, tmp_path: Path) -> None:
    from trainer_pt import __main__ as cli
    from trainer_pt import export

    measured = load_manifest(ModelRepository(trained.repo).manifest_path(MODEL)).exports["onnx_int8"]
    assert measured.top1_agreement is not None
    assert measured.top1_agreement < 1.0, "INT8 agreed on every image: no gate above it exists"
    # The same data and calibration as the trained run's export, so the same INT8 model and figure.
    gate = measured.top1_agreement + 0.5 / (measured.n or 1)
    repo = tmp_path / "repo"
    args: argparse.Namespace = cli.get_args_parser().parse_args(
        [
            "export", "--run-dir", str(trained.run_dir), "--model-repository", str(repo),
            "--calibration-images", "128", "--quantized-min-agreement", f"{gate:.6f}",
        ]
    )  # fmt: skip
    with pytest.raises(ExportGateError, match=r"INT8 ONNX \(--quantized-min-agreement\): top-1 agreement"):
        export.export_run(args)
    leftovers = [p for p in repo.rglob("*") if p.is_file()] if repo.exists() else []
    assert leftovers == [], f"a failed INT8 gate must publish nothing: {leftovers}"


def test_the_gate_flag_is_a_probability() -> None:
    from trainer_pt import __main__ as cli

    with pytest.raises(SystemExit):
        cli.get_args_parser().parse_args(["export", "--run-dir", "x", "--quantized-min-agreement", "1.5"])
