"""Exports of the trained run: layout, names, the validation gate (passing and failing), TF Serving files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import IMAGE_SIZE, TrainedRun, run_trainer

from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository
from imgbench.validation import (
    DEFAULT_MAX_ABS_DIFF,
    DEFAULT_MIN_AGREEMENT,
    ExportGateError,
    compare_logits,
    enforce_gate,
)

MODEL = "tf_mobilenet_v3_small"


@pytest.fixture(scope="module")
def repo(trained: TrainedRun) -> ModelRepository:
    return ModelRepository(trained.repository)


@pytest.fixture(scope="module")
def val_images(trained: TrainedRun):
    from trainer_tf import data

    _, val = data.list_dataset(trained.data)
    return data.eval_arrays(val, IMAGE_SIZE, data.default_val_resize(IMAGE_SIZE))


def test_manifest_describes_every_export_and_the_gate_passed(repo: ModelRepository) -> None:
    manifest = load_manifest(repo.manifest_path(MODEL))
    assert (manifest.model, manifest.framework, manifest.version) == (MODEL, "tensorflow", 1)
    assert manifest.input.name == "image" and manifest.input.layout == "NHWC"
    assert manifest.input.shape == [None, IMAGE_SIZE, IMAGE_SIZE, 3]
    assert manifest.output_names == ["logits", "probabilities"]
    assert set(manifest.exports) == {
        "savedmodel", "onnx", "tflite_fp32", "tflite_dynamic", "tflite_int8", "tensorrt",
    }  # fmt: skip
    # No TensorRT plan; the GPU Triton runs ONNX through the TensorRT execution provider (issue 14).
    tensorrt = manifest.exports["tensorrt"]
    assert tensorrt.status == "skipped" and tensorrt.details["plan"] is False
    assert manifest.exports["onnx"].details["cuda_execution_provider"]["status"] == "skipped"
    assert manifest.environment["gpu_count"] == "0" and manifest.environment["cuda"] == "none"
    for name in ("savedmodel", "onnx", "tflite_fp32"):
        record = manifest.exports[name]
        assert record.n == manifest.dataset.num_eval == 359
        assert record.top1_agreement >= DEFAULT_MIN_AGREEMENT, name
        assert record.max_abs_logit_diff <= DEFAULT_MAX_ABS_DIFF, name
        assert (repo.root / record.path).exists(), record.path
    sizes = {v: manifest.exports[f"tflite_{v}"].size_bytes for v in ("fp32", "dynamic", "int8")}
    assert sizes["dynamic"] < sizes["fp32"] / 2 and sizes["int8"] < sizes["fp32"] / 2
    for variant in ("fp32", "dynamic", "int8"):
        record = manifest.exports[f"tflite_{variant}"]
        assert repo.tflite(MODEL, variant).stat().st_size == record.size_bytes
        assert record.latency_ms_per_image > 0 and record.accuracy is not None
        assert record.top1_agreement >= 0.9
    assert manifest.training.parameters == 1528106


def test_savedmodel_signature(repo: ModelRepository) -> None:
    """What `saved_model_cli show --tag_set serve --signature_def serving_default` shows, checked."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(repo.tfserving_version_dir(MODEL, 1)))
    serve = loaded.signatures["serving_default"]
    _, inputs = serve.structured_input_signature
    assert list(inputs) == ["image"]
    spec = inputs["image"]
    assert spec.dtype == tf.float32
    assert spec.shape.as_list() == [None, IMAGE_SIZE, IMAGE_SIZE, 3]  # NHWC, batch dynamic
    assert set(serve.structured_outputs) == {"logits", "probabilities"}
    for batch in (1, 3):
        out = serve(image=tf.zeros([batch, IMAGE_SIZE, IMAGE_SIZE, 3]))
        assert out["logits"].shape == (batch, 10)
        np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_onnx_and_triton_layout(repo: ModelRepository) -> None:
    model = onnx.load(str(repo.triton_onnx(MODEL, 1)))
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [IMAGE_SIZE, IMAGE_SIZE, 3]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 18
    # Triton 24.10 (compose) runs ONNX Runtime 1.19, which reads IR versions up to 10.
    assert model.ir_version <= 10
    config = repo.triton_config(MODEL).read_text()
    assert f'name: "{MODEL}"' in config and 'platform: "onnxruntime_onnx"' in config
    assert 'name: "image"' in config and f"dims: [ {IMAGE_SIZE}, {IMAGE_SIZE}, 3 ]" in config
    assert 'name: "logits"' in config and "dims: [ 10 ]" in config
    assert "KIND_CPU" in config and "tensorrt" not in config
    gpu = (repo.triton_model_dir(MODEL) / "configs" / "gpu.pbtxt").read_text()
    assert "KIND_GPU" in gpu and 'name: "tensorrt"' in gpu and 'name: "image"' in gpu


def test_tfserving_configs_next_to_the_models(repo: ModelRepository) -> None:
    root = repo.tfserving_dir
    models_config = (root / "models.config").read_text()
    assert f'name: "{MODEL}"' in models_config
    assert f'base_path: "{root.resolve()}/{MODEL}"' in models_config
    assert 'path: "/monitoring/prometheus/metrics"' in (root / "monitoring.config").read_text()
    assert "enable: true" in (root / "monitoring.config").read_text()
    batching = (root / "batching_parameters.txt").read_text()
    assert "max_batch_size { value: 32 }" in batching and "batch_timeout_micros" in batching


def test_broken_onnx_export_fails_the_gate(repo: ModelRepository, val_images, tmp_path: Path) -> None:
    """The gate that passed for the real export rejects one whose classifier weights were altered."""
    from onnx import numpy_helper
    from trainer_tf.export import onnx_logits, savedmodel_logits

    images, labels = val_images
    reference = savedmodel_logits(repo.tfserving_version_dir(MODEL, 1), images)
    good = compare_logits(reference, onnx_logits(repo.triton_onnx(MODEL, 1), images), labels)
    enforce_gate("ONNX", good)

    model = onnx.load(str(repo.triton_onnx(MODEL, 1)))
    # The largest initializer feeding the logits is the classifier kernel: permute its output columns.
    kernel = max(
        (t for t in model.graph.initializer if len(t.dims) == 2 and t.dims[-1] == 10), key=lambda t: t.dims[0]
    )
    weights = numpy_helper.to_array(kernel)
    kernel.CopyFrom(numpy_helper.from_array(np.roll(weights, 1, axis=-1), kernel.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    bad = compare_logits(reference, onnx_logits(broken, images), labels)
    with pytest.raises(ExportGateError, match="ONNX"):
        enforce_gate("ONNX", bad)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_failed_gate_publishes_nothing(trained: TrainedRun, repo: ModelRepository, tmp_path: Path) -> None:
    """A gate nothing can meet (|Δlogit| ≤ 1e-12): one-line error, exit 1, repository untouched."""
    copy = tmp_path / "model-repository"
    shutil.copytree(repo.root, copy)
    before = _digest(copy)
    process = run_trainer(
        "export",
        "--run-dir",
        str(trained.run_dir),
        "--model-repository",
        str(copy),
        "--max-abs-diff",
        "1e-12",
        "--skip-tflite",
    )
    assert process.returncode == 1
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "exceeds the tolerance" in errors[0], process.stderr[-2000:]
    assert "Traceback" not in process.stderr
    assert _digest(copy) == before
    assert not list(copy.glob(".staging-*"))
