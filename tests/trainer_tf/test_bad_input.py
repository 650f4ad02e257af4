"""Bad input: one line on stderr starting with "error:", exit 1, no traceback, nothing overwritten."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import TrainedRun, run_trainer, train_args


def _assert_one_line_error(process, *fragments: str) -> None:
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 1, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, process.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_missing_dataset_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    process = run_trainer(*train_args(missing, tmp_path / "run"))
    _assert_one_line_error(process, str(missing), "does not exist")
    assert not (tmp_path / "run").exists()


def test_unknown_model_name_lists_the_catalog(tmp_path: Path, digits32: Path) -> None:
    args = train_args(digits32, tmp_path / "run")
    args[args.index("--model") + 1] = "resnet19"
    process = run_trainer(*args)
    _assert_one_line_error(process, "'resnet19'", "resnet18", "mobilenet_v3_small", "vit_l_16")
    assert not (tmp_path / "run").exists()


def test_corrupt_image_is_named(tmp_path: Path, digits32: Path) -> None:
    data = tmp_path / "digits"
    shutil.copytree(digits32, data)
    victim = sorted((data / "train" / "3").iterdir())[5]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    process = run_trainer(*train_args(data, tmp_path / "run"))
    _assert_one_line_error(process, str(victim))
    assert not (tmp_path / "run").exists()


def test_empty_class_folder(tmp_path: Path, digits32: Path) -> None:
    data = tmp_path / "digits"
    shutil.copytree(digits32, data)
    for image in (data / "val" / "7").iterdir():
        image.unlink()
    process = run_trainer(*train_args(data, tmp_path / "run"))
    _assert_one_line_error(process, str(data / "val" / "7"))


def test_class_count_mismatch_on_resume_touches_nothing(
    tmp_path: Path, digits32: Path, trained: TrainedRun
) -> None:
    data = tmp_path / "nine-digits"
    shutil.copytree(digits32, data)
    for split in ("train", "val"):
        shutil.rmtree(data / split / "9")
    before = _digest(trained.run_dir)
    process = run_trainer(*train_args(data, trained.run_dir), "--resume")
    _assert_one_line_error(process, "9 classes", "10", str(trained.run_dir))
    assert _digest(trained.run_dir) == before


def test_new_run_refuses_to_overwrite_an_existing_one(
    tmp_path: Path, digits32: Path, trained: TrainedRun
) -> None:
    before = _digest(trained.run_dir)
    process = run_trainer(*train_args(digits32, trained.run_dir))
    _assert_one_line_error(process, "already holds a run", "--resume")
    assert _digest(trained.run_dir) == before


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("--epochs", "0", "--epochs"),
        ("--label-smoothing", "1.5", "--label-smoothing"),
        ("--image-size", "16", "image-size"),
    ],
)
def test_bad_settings(tmp_path: Path, digits32: Path, flag: str, value: str, fragment: str) -> None:
    args = train_args(digits32, tmp_path / "run")
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    _assert_one_line_error(run_trainer(*args), fragment)
