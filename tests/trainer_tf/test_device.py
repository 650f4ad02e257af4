"""--device cuda without a GPU: one error line, never a quiet fall back to the CPU (issue 14)."""

from __future__ import annotations

from pathlib import Path

from conftest import run_trainer, train_args


def test_device_cuda_without_a_gpu_fails_before_training(tmp_path: Path, digits32: Path) -> None:
    run_dir = tmp_path / "run"
    process = run_trainer(*train_args(digits32, run_dir), "--device", "cuda")
    assert process.returncode == 1, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    (line,) = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert "--device cuda" in line and "no GPU" in line
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())
