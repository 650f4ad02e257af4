"""One real training run on digits: accuracy, per-epoch figures, the run's config."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import EPOCHS, MIN_TOP1, TrainedRun

from imgbench.manifest import EpochRecord
from imgbench.trainer_cli import RECIPE_KEYS
from imgbench.training_log import CSV_NAME, FIELDS, JSONL_NAME, read_epochs

pytestmark = pytest.mark.slow


def test_reaches_the_measured_accuracy(trained: TrainedRun) -> None:
    best = max(record.top1 for record in read_epochs(trained.run_dir))
    assert best >= MIN_TOP1, f"best val top-1 {best:.2%} is below {MIN_TOP1:.0%}"


def test_metrics_files_have_every_epoch_and_field(trained: TrainedRun) -> None:
    records = read_epochs(trained.run_dir)
    assert [r.epoch for r in records] == list(range(1, EPOCHS + 1))
    for record in records:
        assert record.seconds > 0 and record.images_per_second > 0 and record.peak_memory_bytes > 1e6
        assert 0 <= record.top1 <= record.top5 <= 1 and record.lr is not None
    # Training makes progress: the last epoch's loss is well below the first's.
    assert records[-1].train_loss < 0.7 * records[0].train_loss

    with (trained.run_dir / CSV_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == FIELDS
    assert [int(row["epoch"]) for row in rows] == [r.epoch for r in records]
    for row, record in zip(rows, records, strict=True):
        assert float(row["top1"]) == pytest.approx(record.top1)
    lines = (trained.run_dir / JSONL_NAME).read_text().splitlines()
    assert all(EpochRecord.model_validate_json(line) for line in lines)


def test_config_records_the_resolved_recipe(trained: TrainedRun) -> None:
    config = json.loads((trained.run_dir / "config.json").read_text())
    assert config["model"] == "mobilenet_v3_small"
    assert config["epochs"] == EPOCHS
    assert config["momentum"] == 0.9 and config["weight_decay"] == 1e-4
    # Linear scaling: --lr is per 256 images, the run used batch 32 on one process.
    assert config["effective_lr"] == pytest.approx(0.8 * 32 / 256)
    assert config["world_size"] == 1 and config["num_classes"] == 10
    # The shared recipe record: the same keys as the other trainer, threads and device as used.
    recipe = config["recipe"]
    assert sorted(recipe) == sorted(RECIPE_KEYS)
    assert recipe["threads"] >= 1 and recipe["device"].startswith("cpu: ")
    assert recipe["bn_momentum"] == 0.1 and recipe["global_batch_size"] == 32


def test_best_and_last_checkpoints_exist(trained: TrainedRun) -> None:
    import torch

    best = torch.load(trained.run_dir / "checkpoint_best.pt", map_location="cpu", weights_only=False)
    last = torch.load(trained.run_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert last["epoch"] == EPOCHS and last["in_progress"] is None
    assert best["best_epoch"] == best["epoch"] and best["best_top1"] == max(
        r.top1 for r in read_epochs(trained.run_dir)
    )
    assert {"model", "optimizer", "lr_scheduler", "scaler", "rng", "args", "class_names"} <= set(last)
    assert (trained.run_dir / "checkpoint_last.prev.pt").exists()
