"""Dynamic-shape exports of trainer-tf (``--dynamic-sizes``): savedmodel_dynamic (signature with None
height/width) and onnx_dynamic, gated against Keras on the whole val split at the training size and at
48 px, served under their own name, and ``dynamic-bench``'s results file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGE_SIZE, TrainedRun, run_trainer

from imgbench.dynamic_shapes import load_results, served_name
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository

MODEL = "tf_mobilenet_v3_small"
OTHER = 48


@pytest.fixture(scope="module")
def dynamic_repo(trained: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    repo = tmp_path_factory.mktemp("dynamic") / "model-repository"
    result = run_trainer(
        "export", "--run-dir", str(trained.run_dir), "--model-repository", str(repo),
        "--skip-tflite", "--dynamic-sizes", str(OTHER),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return ModelRepository(repo)


def test_dynamic_exports_are_gated_at_every_size(dynamic_repo: ModelRepository) -> None:
    manifest = load_manifest(dynamic_repo.manifest_path(MODEL))
    for key in ("savedmodel_dynamic", "onnx_dynamic"):
        record = manifest.exports[key]
        assert record.status == "ok" and (dynamic_repo.root / record.path).exists(), record
        assert record.details["gated_sizes"] == [IMAGE_SIZE, OTHER]
        assert record.n == manifest.dataset.num_eval and record.top1_agreement >= 0.999
        for size in (IMAGE_SIZE, OTHER):
            figures = record.details["sizes"][str(size)]
            assert figures["n"] == manifest.dataset.num_eval and figures["top1_agreement"] >= 0.999, figures


def test_savedmodel_dynamic_takes_any_height_and_width(dynamic_repo: ModelRepository) -> None:
    import tensorflow as tf

    manifest = load_manifest(dynamic_repo.manifest_path(MODEL))
    served = served_name(MODEL)
    path = dynamic_repo.root / manifest.exports["savedmodel_dynamic"].path
    assert path == dynamic_repo.tfserving_version_dir(served, manifest.version)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, None, None, 3]
    for size in (IMAGE_SIZE, OTHER, 37):
        logits = serve(image=tf.zeros([2, size, size, 3]))["logits"].numpy()
        assert logits.shape == (2, len(manifest.class_names)) and np.isfinite(logits).all()
    # TF Serving serves it under its own name; Triton gets the ONNX one with -1 height/width.
    assert f'name: "{served}"' in (dynamic_repo.tfserving_dir / "models.config").read_text()
    assert "dims: [ -1, -1, 3 ]" in dynamic_repo.triton_config(served).read_text()


def test_dynamic_bench_writes_accuracy_and_latency(
    trained: TrainedRun, dynamic_repo: ModelRepository, tmp_path: Path
) -> None:
    # The training size only: each size costs a fixed-shape SavedModel and ONNX export (~20 s here).
    result = run_trainer(
        "dynamic-bench", "--run-dir", str(trained.run_dir), "--model-repository", str(dynamic_repo.root),
        "--sizes", str(IMAGE_SIZE), "--latency-runs", "5", "--limit", "64", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    bench = load_results(tmp_path / f"{MODEL}.json")
    assert bench.framework == "tensorflow" and bench.sizes == [IMAGE_SIZE] and bench.compile == []
    assert {r.runtime for r in bench.rows} == {"tf.saved_model", "onnxruntime"}
    for row in bench.rows:
        assert (
            row.n == 64 and row.latency_samples == 5 and row.latency_ms_dynamic > 0 and row.latency_ms_fixed
        )
        assert row.agreement_with_fixed == 1.0 and row.accuracy_dynamic == row.accuracy_fixed
