"""Exports: the repository layout, the validation gate (passes for the real export, fails for a broken
one), INT8 figures, the manifest written last, and the .mar served through the handler."""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, TrainedRun

from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository
from imgbench.validation import DEFAULT_MAX_ABS_DIFF, DEFAULT_MIN_AGREEMENT, ExportGateError

pytestmark = pytest.mark.slow
MODEL = "pt_mobilenet_v3_small"


def test_manifest_describes_the_model(trained: TrainedRun) -> None:
    repo = ModelRepository(trained.repo)
    manifest = load_manifest(repo.manifest_path(MODEL))
    assert manifest.version == 1 and manifest.architecture == "mobilenet_v3_small"
    assert manifest.input.name == "image" and manifest.input.layout == "NCHW"
    assert manifest.input.shape == [None, 3, IMAGE_SIZE, IMAGE_SIZE]
    assert manifest.output_names == ["logits"] and manifest.class_names == [str(i) for i in range(10)]
    assert manifest.dataset.num_eval == 359 and manifest.dataset.num_train == 1438
    assert manifest.training.parameters == 1_528_106
    assert manifest.training.top1 == max(r.top1 for r in manifest.training.history)


def test_exports_pass_the_gate_on_the_whole_val_split(trained: TrainedRun) -> None:
    manifest = load_manifest(ModelRepository(trained.repo).manifest_path(MODEL))
    for fmt in ("torchscript", "onnx"):
        record = manifest.exports[fmt]
        assert record.status == "ok" and record.n == manifest.dataset.num_eval
        assert record.top1_agreement is not None and record.top1_agreement >= DEFAULT_MIN_AGREEMENT
        assert record.max_abs_logit_diff is not None and record.max_abs_logit_diff <= DEFAULT_MAX_ABS_DIFF
        assert (trained.repo / record.path).is_file()
    # No plan is built; the record says what the GPU server runs instead (issue 14).
    tensorrt = manifest.exports["tensorrt"]
    assert tensorrt.status == "skipped" and tensorrt.details["plan"] is False
    assert tensorrt.details["execution_accelerator"] == "onnxruntime-tensorrt"
    # The CUDA provider check runs only with onnxruntime-gpu on a GPU; here it says why it did not.
    assert manifest.exports["onnx"].details["cuda_execution_provider"]["status"] == "skipped"
    assert manifest.environment["gpu_count"] == "0" and manifest.environment["cuda"] == "none"


def test_int8_figures_are_recorded(trained: TrainedRun) -> None:
    manifest = load_manifest(ModelRepository(trained.repo).manifest_path(MODEL))
    int8 = manifest.exports["onnx_int8"]
    fp32_size = manifest.exports["onnx"].size_bytes
    assert int8.size_bytes is not None and fp32_size is not None and int8.size_bytes < 0.5 * fp32_size
    assert int8.accuracy is not None and int8.accuracy > 0.5  # far above chance (10%), below fp32
    assert int8.top1_agreement is not None and int8.latency_ms_per_image is not None
    assert (trained.repo / int8.path).is_file()


def test_onnx_layout_and_triton_config(trained: TrainedRun) -> None:
    import onnx
    import onnxruntime as ort

    repo = ModelRepository(trained.repo)
    path = repo.triton_onnx(MODEL, 1)
    model = onnx.load(str(path))
    assert model.opset_import[0].version in (17, 18)
    # Triton 24.10 (compose) runs ONNX Runtime 1.19, which reads IR versions up to 10.
    assert model.ir_version <= 10
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch axis is dynamic
        (logits,) = session.run(
            ["logits"], {"image": np.zeros((batch, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)}
        )
        assert logits.shape == (batch, 10)
    config = repo.triton_config(MODEL).read_text()
    assert 'platform: "onnxruntime_onnx"' in config and 'name: "image"' in config
    assert f"dims: [ 3, {IMAGE_SIZE}, {IMAGE_SIZE} ]" in config and "dynamic_batching" in config
    assert "KIND_CPU" in config and "tensorrt" not in config
    gpu = (repo.triton_model_dir(MODEL) / "configs" / "gpu.pbtxt").read_text()
    assert "KIND_GPU" in gpu and 'name: "tensorrt"' in gpu and 'name: "image"' in gpu


def _fake_context(model_dir: Path) -> SimpleNamespace:
    statuses: dict[int, int] = {}
    return SimpleNamespace(
        system_properties={"model_dir": str(model_dir)},
        manifest={"model": {"serializedFile": "model.pt"}},
        statuses=statuses,
        set_response_status=lambda code, phrase, idx: statuses.__setitem__(idx, code),
    )


def test_mar_serves_batched_requests_through_the_handler(
    trained: TrainedRun, tmp_path: Path, handler_module: ModuleType
) -> None:
    handler = handler_module
    mar = ModelRepository(trained.repo).torchserve_mar(MODEL)
    with zipfile.ZipFile(mar) as archive:
        names = set(archive.namelist())
        assert {"model.pt", "handler.py", "model_meta.json", "MAR-INF/MANIFEST.json"} <= names
        mar_manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        archive.extractall(tmp_path)
    assert mar_manifest["model"]["modelName"] == MODEL
    service = handler.ImgbenchHandler()
    context = _fake_context(tmp_path)
    service.initialize(context)

    images = np.random.default_rng(0).standard_normal((5, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    requests = [
        {"data": handler.encode_logits(images[:2])},
        {"body": b"not npy"},
        {"data": handler.encode_logits(images[2:])},
    ]
    responses = service.handle(requests, context)
    first, third = (np.load(io.BytesIO(responses[i])) for i in (0, 2))
    assert first.shape == (2, 10) and third.shape == (3, 10) and first.dtype == np.float32
    assert context.statuses == {1: 400} and "npy" in json.loads(responses[1])["error"]
    # Batched answers equal one-request-per-image answers from the same TorchScript model.
    scripted = torch.jit.load(str(tmp_path / "model.pt"))
    with torch.inference_mode():
        expected = scripted(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(np.concatenate([first, third]), expected, atol=1e-4)


def test_broken_export_fails_the_gate_and_leaves_the_repository_alone(
    trained: TrainedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer_pt import __main__ as cli
    from trainer_pt import export

    def tampered(model: torch.nn.Module) -> torch.nn.Module:
        # "Model altered after training": the exported weights are not the trained ones.
        altered = export.copy.deepcopy(model).eval()
        with torch.no_grad():
            altered.classifier[-1].weight.mul_(-1.0)
        return altered

    monkeypatch.setattr(export, "prepare_for_export", tampered)
    repo = tmp_path / "repo"
    args: argparse.Namespace = cli.get_args_parser().parse_args(
        ["export", "--run-dir", str(trained.run_dir), "--model-repository", str(repo), "--skip-int8"]
    )
    with pytest.raises(ExportGateError, match="torchscript: top-1 agreement"):
        export.export_run(args)
    leftovers = [p for p in repo.rglob("*") if p.is_file()] if repo.exists() else []
    assert leftovers == [], f"a failed gate must not leave artifacts: {leftovers}"
