"""SIGKILL in the middle of epoch 2, then --resume: the run finishes its epochs, epoch 1 is not repeated,
and SIGTERM stops cleanly with a resumable state."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_trainer, train_args, trainer_env

from imgbench.training_log import JSONL_NAME

EPOCHS = 3


def _epochs_logged(run_dir: Path) -> list[dict]:
    path = run_dir / JSONL_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainer_tf", *args],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=trainer_env(),
    )


def _backed_up_epochs(run_dir: Path) -> int:
    state = run_dir / "backup" / "state.json"
    try:
        return int(json.loads(state.read_text())["epoch"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _wait_for_epochs(process: subprocess.Popen, run_dir: Path, count: int, timeout: float) -> None:
    """Until ``count`` epochs are committed: the metrics row, the best model and the backup all written
    (the backup is last)."""
    deadline = time.monotonic() + timeout
    while _backed_up_epochs(run_dir) < count:
        assert process.poll() is None, f"trainer exited early with {process.returncode}"
        assert time.monotonic() < deadline, f"no epoch {count} within {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_during_epoch_2_then_resume(tmp_path: Path, digits32: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*train_args(digits32, run_dir, epochs=EPOCHS), "--no-export"]
    process = _start(args, tmp_path / "first.log")
    try:
        _wait_for_epochs(process, run_dir, 1, timeout=600)
        time.sleep(1.0)  # inside epoch 2 (an epoch takes 5-15 s here)
        assert len(_epochs_logged(run_dir)) == 1, "epoch 2 finished before the kill: the test proves nothing"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    first_epoch = _epochs_logged(run_dir)[0]
    state = json.loads((run_dir / "backup" / "state.json").read_text())
    assert state["epoch"] == 1

    resumed = run_trainer(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    epochs = _epochs_logged(run_dir)
    assert [row["epoch"] for row in epochs] == list(range(1, EPOCHS + 1))
    assert epochs[0] == first_epoch  # epoch 1 was not trained again
    assert json.loads((run_dir / "backup" / "state.json").read_text())["epoch"] == EPOCHS


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_a_resumable_state(tmp_path: Path, digits32: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*train_args(digits32, run_dir, epochs=EPOCHS), "--no-export"]
    log = tmp_path / "train.log"
    process = _start(args, log)
    try:
        _wait_for_epochs(process, run_dir, 1, timeout=600)
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = log.read_text()
    assert returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    assert json.loads((run_dir / "backup" / "state.json").read_text())["epoch"] >= 1
