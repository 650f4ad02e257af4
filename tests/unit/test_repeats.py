"""--repeats: one run folder per seed, and mean ± 95% CI across seeds (imgbench.training_log)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from imgbench import trainer_cli
from imgbench.errors import ImgbenchError
from imgbench.manifest import EpochRecord
from imgbench.training_log import append_epoch, mean_ci95, write_repeats


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    trainer_cli.add_train_arguments(parser, "runs/x")
    return parser.parse_args(["--data-path", "d", *extra])


def test_repeat_runs_give_one_folder_per_seed(tmp_path: Path) -> None:
    runs = trainer_cli.repeat_runs(
        _args("--repeats", "3", "--seed", "5", "--output-dir", str(tmp_path)), Path("x")
    )
    assert [run.seed for run in runs] == [5, 6, 7]
    assert [run.output_dir for run in runs] == [tmp_path / f"seed-{s}" for s in (5, 6, 7)]
    assert all(run.repeats == 1 for run in runs)
    single = _args("--output-dir", str(tmp_path))
    assert trainer_cli.repeat_runs(single, Path("x")) == [single]
    with pytest.raises(ImgbenchError, match="got 0"):
        trainer_cli.repeat_runs(_args("--repeats", "0"), Path("x"))


def test_ci95_uses_student_t_and_refuses_one_run() -> None:
    assert mean_ci95([0.9])["ci95"] is None
    summary = mean_ci95([0.90, 0.92, 0.94])
    assert summary["mean"] == pytest.approx(0.92)
    assert summary["ci95"] == pytest.approx(4.303 * 0.02 / 3**0.5)


def test_repeats_json_lists_every_seed(tmp_path: Path) -> None:
    runs = {}
    for seed, top1 in ((0, 0.9), (1, 0.94)):
        run_dir = tmp_path / f"seed-{seed}"
        for epoch, seconds in ((1, 9.0), (2, 3.0)):
            append_epoch(
                run_dir,
                EpochRecord(
                    epoch=epoch, train_loss=1.0, val_loss=1.0, top1=top1 * epoch / 2, top5=1.0,
                    seconds=seconds, images_per_second=100.0, peak_memory_bytes=10, lr=0.1,
                ),
            )  # fmt: skip
        runs[seed] = run_dir
    document = json.loads(write_repeats(tmp_path, runs).read_text())
    assert document["seeds"] == [0, 1]
    assert [row["top1"] for row in document["per_seed"]] == [0.9, 0.94]
    assert document["per_seed"][0]["seconds_per_epoch"] == 3.0  # the first epoch is warm-up
    assert document["across_seeds"]["top1"]["n"] == 2
