"""The TFLite interpreter's peak memory (imgbench.edge_memory): measured in a fresh process, it grows with
the model, bad input is named, and trainer-tf's TFLite records carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TrainedRun

from imgbench.edge_memory import bench, measure_tflite_memory
from imgbench.errors import ImgbenchError
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository

MODEL = "tf_mobilenet_v3_small"


def _dense_tflite(path: Path, features: int, width: int) -> Path:
    """A two-layer MLP with about 2·features·width float32 weights, as a TFLite flatbuffer."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((features,))
    outputs = keras.layers.Dense(features)(keras.layers.Dense(width, activation="relu")(inputs))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert())
    return path


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("edge-memory")
    small = _dense_tflite(folder / "small.tflite", 256, 256)  # ~0.5 MB of weights
    return small, _dense_tflite(folder / "large.tflite", 1024, 4096)  # ~32 MB


def test_peak_memory_is_positive_and_grows_with_the_model(two_models: tuple[Path, Path]) -> None:
    small, large = (measure_tflite_memory(path, invocations=20) for path in two_models)
    for memory in (small, large):
        assert memory.method == "vmhwm"  # Linux: the peak mark was reset after the imports
        assert memory.peak_growth_bytes > 0
        assert memory.peak_rss_bytes == memory.baseline_rss_bytes + memory.peak_growth_bytes
        assert memory.steady_growth_bytes <= memory.peak_growth_bytes
        assert memory.latency_ms_p50 > 0 and memory.invocations == 20 and memory.threads == 1
    # The larger model's weights are paged in (and packed by XNNPACK): its growth exceeds the small
    # model's by at least most of the difference in file size.
    assert large.model_bytes > 30 * small.model_bytes
    assert large.peak_growth_bytes - small.peak_growth_bytes >= 0.8 * (large.model_bytes - small.model_bytes)


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImgbenchError, match="no TFLite model at"):
        measure_tflite_memory(tmp_path / "missing.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 64)
    with pytest.raises(ImgbenchError, match=r"garbage\.tflite is not a TFLite model LiteRT can load"):
        measure_tflite_memory(garbage)
    with pytest.raises(ImgbenchError, match="at least 1"):
        measure_tflite_memory(garbage, invocations=0)


def test_trainer_tf_records_the_interpreters_memory(trained: TrainedRun, tmp_path: Path) -> None:
    repo = ModelRepository(trained.repository)
    manifest = load_manifest(repo.manifest_path(MODEL))
    growth = {}
    for variant in ("fp32", "dynamic", "int8"):
        record = manifest.exports[f"tflite_{variant}"]
        memory = record.details["memory"]
        assert memory["model_bytes"] == record.size_bytes
        assert memory["peak_growth_bytes"] > 0 and memory["threads"] == record.details["threads"]
        growth[variant] = memory["peak_growth_bytes"]
    assert growth["int8"] < growth["fp32"]  # a quarter of the weights
    # The bench measures every TFLite export of a repository again, one process each, into one file.
    result = bench(trained.repository, tmp_path / "edge-memory.json", repeats=1, threads=1, invocations=5)
    written = json.loads((tmp_path / "edge-memory.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert {row["export"] for row in written["models"]} == {"tflite_fp32", "tflite_dynamic", "tflite_int8"}
    assert all(row["runs"][0]["peak_growth_bytes"] > 0 for row in written["models"])
