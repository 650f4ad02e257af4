"""Training on digits: accuracy, the per-epoch figures trainer-pt also writes, and the schedule."""

from __future__ import annotations

import csv
import json
import math

import pytest
from conftest import EPOCHS, LR, TrainedRun

from imgbench.manifest import EpochRecord, load_manifest
from imgbench.paths import ModelRepository
from imgbench.trainer_cli import RECIPE_KEYS
from imgbench.training_log import CSV_NAME, FIELDS, JSONL_NAME

# Measured: mobilenet_v3_small, digits 32×32, 6 epochs, peak lr 0.02: 92.8% best val top-1 (epoch 5);
# the threshold leaves room for run-to-run noise on a loaded machine.
MIN_VAL_TOP1 = 0.85


def test_val_top1_above_threshold(trained: TrainedRun) -> None:
    manifest = load_manifest(ModelRepository(trained.repository).manifest_path("tf_mobilenet_v3_small"))
    assert manifest.training.top1 >= MIN_VAL_TOP1, manifest.training.history
    # The exported (best) weights are what the manifest's figure describes.
    assert manifest.exports["onnx"].accuracy is not None
    assert abs(manifest.exports["onnx"].accuracy - manifest.training.top1) < 0.01


def test_metrics_files_complete_with_trainer_pt_fields(trained: TrainedRun) -> None:
    rows = [json.loads(line) for line in (trained.run_dir / JSONL_NAME).read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1))
    for row in rows:
        assert list(row) == FIELDS  # same names, same order as trainer-pt (imgbench.training_log)
        record = EpochRecord.model_validate(row)
        assert record.seconds > 0 and record.images_per_second > 0 and record.peak_memory_bytes > 0
        assert math.isfinite(record.train_loss) and math.isfinite(record.val_loss)
        assert 0 <= record.top1 <= record.top5 <= 1
    with (trained.run_dir / CSV_NAME).open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == FIELDS
        csv_rows = list(reader)
    assert [int(r["epoch"]) for r in csv_rows] == list(range(1, EPOCHS + 1))
    assert float(csv_rows[-1]["top1"]) == rows[-1]["top1"]


def test_learning_rate_follows_trainer_pt_schedule(trained: TrainedRun) -> None:
    """Peak lr = --lr · 32 / 256, then per-epoch cosine annealing: lr_e = peak · (1 + cos(π e / E)) / 2."""
    rows = [json.loads(line) for line in (trained.run_dir / JSONL_NAME).read_text().splitlines()]
    peak = float(LR) * 32 / 256
    expected = [peak * 0.5 * (1 + math.cos(math.pi * e / EPOCHS)) for e in range(EPOCHS)]
    assert [row["lr"] for row in rows] == pytest.approx(expected, rel=1e-5)


def test_config_records_resolved_recipe(trained: TrainedRun) -> None:
    config = json.loads((trained.run_dir / "config.json").read_text())
    assert config["steps_per_epoch"] == 1438 // 32  # the real number, last partial batch dropped
    assert config["total_steps"] == config["steps_per_epoch"] * EPOCHS
    assert config["bn_momentum_keras"] == 0.9
    assert config["jit_compile"] is False
    assert config["class_names"] == [str(d) for d in range(10)]
    # The shared recipe record: the same keys as the other trainer, threads and device as used.
    recipe = config["recipe"]
    assert sorted(recipe) == sorted(RECIPE_KEYS)
    assert recipe["threads"] >= 1 and recipe["device"].startswith("cpu: ")
    assert recipe["bn_momentum"] == 0.1 and recipe["global_batch_size"] == 32
