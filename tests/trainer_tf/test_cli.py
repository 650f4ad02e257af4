"""The shared trainer contract as trainer-tf exposes it: --if-exists, one default per help text."""

from __future__ import annotations

from pathlib import Path

from conftest import run_trainer


def test_if_exists_skip_exits_0_without_training(tmp_path: Path) -> None:
    repository = tmp_path / "model-repository"
    (repository / "manifests").mkdir(parents=True)
    (repository / "manifests" / "tf_mobilenet_v3_small.json").write_text("{}")
    data = tmp_path / "no-dataset-needed"
    args = [
        "train",
        "--data-path",
        str(data),
        "--model",
        "mobilenet_v3_small",
        "--output-dir",
        str(tmp_path / "run"),
    ]
    result = run_trainer(*args, "--model-repository", str(repository), "--if-exists=skip")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--if-exists=skip" in result.stderr and not (tmp_path / "run").exists()
    # Without skip the same command trains, so it fails on the missing dataset.
    assert run_trainer(*args, "--model-repository", str(repository)).returncode == 1


def test_help_states_each_default_once() -> None:
    result = run_trainer("train", "--help")
    assert result.returncode == 0
    assert "(default: 10) (default: 10)" not in result.stdout
    for flag in ("--data-path", "--output-dir", "--if-exists", "--bn-momentum", "--lr-schedule", "--dropout"):
        assert flag in result.stdout
