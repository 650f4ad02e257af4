"""Bad input: one line naming the path or value, non-zero exit, no traceback, no checkpoint touched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import RECIPE, TrainedRun, run_trainer

pytestmark = pytest.mark.slow


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("checkpoint*.pt"))}


def test_missing_dataset_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_trainer("train", "--data-path", str(missing), "--output-dir", str(tmp_path / "run"))
    _assert_one_line_error(result, str(missing), "does not exist")
    assert not (tmp_path / "run").exists()


def test_empty_split_folder(tmp_path: Path) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "val").mkdir()
    result = run_trainer(
        "train", "--data-path", str(tmp_path / "data"), "--output-dir", str(tmp_path / "run")
    )
    _assert_one_line_error(result, "no class folders")


def test_corrupt_image(digits: Path, tmp_path: Path) -> None:
    data = tmp_path / "digits"
    shutil.copytree(digits, data)
    corrupt = next((data / "train" / "3").iterdir())
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_trainer("train", "--data-path", str(data), *RECIPE, "--output-dir", str(tmp_path / "run"))
    _assert_one_line_error(result, str(corrupt))


def test_unknown_model_name(digits: Path, tmp_path: Path) -> None:
    result = run_trainer(
        "train", "--data-path", str(digits), "--model", "resnet9000", "--output-dir", str(tmp_path / "run")
    )
    _assert_one_line_error(result, "'resnet9000'", "resnet18", "mobilenetv4_conv_small")


def test_class_count_mismatch_on_resume(trained: TrainedRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained.run_dir, run_dir)
    before = _digest(run_dir)
    data = tmp_path / "nine-classes"
    shutil.copytree(trained.data, data)
    for split in ("train", "val"):
        shutil.rmtree(data / split / "9")
    result = run_trainer(
        "train", "--data-path", str(data), *RECIPE, "--epochs", "8", "--output-dir", str(run_dir), "--resume"
    )
    _assert_one_line_error(result, "10 classes", str(data), "has 9")
    assert _digest(run_dir) == before


def test_fresh_run_refuses_to_overwrite_a_checkpoint(trained: TrainedRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained.run_dir, run_dir)
    before = _digest(run_dir)
    result = run_trainer("train", "--data-path", str(trained.data), *RECIPE, "--output-dir", str(run_dir))
    _assert_one_line_error(result, str(run_dir), "--resume")
    assert _digest(run_dir) == before


def test_export_without_a_run(tmp_path: Path) -> None:
    result = run_trainer(
        "export", "--run-dir", str(tmp_path / "none"), "--model-repository", str(tmp_path / "r")
    )
    _assert_one_line_error(result, "no checkpoint", "checkpoint_best.pt")
