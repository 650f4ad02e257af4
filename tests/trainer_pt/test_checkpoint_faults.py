"""Checkpoint faults of trainer-pt: a corrupt last checkpoint (truncated, zero bytes, wrong content)
falls back to the previous one with a warning, two bad ones are refused naming both, and a writer
SIGKILLed at 20 seeded random points always leaves a checkpoint that loads, at most one save behind."""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from trainer_pt import checkpoint as ckpt

KILL_POINTS = 20
CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[: len(data) // 2],
    "zero bytes": lambda data: b"",
    "wrong content": lambda data: b'{"model": "not a checkpoint"}\n' * 8,
}


def _state(epoch: int, size: int = 64) -> dict:
    torch.manual_seed(epoch)
    model = torch.nn.Linear(size, size)
    return {"model": model.state_dict(), "epoch": epoch, "args": {"lr": 0.1}, "rng": ckpt.rng_state()}


def _two_checkpoints(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.save_checkpoint(run_dir / ckpt.LAST, _state(1), keep_previous=True)
    ckpt.save_checkpoint(run_dir / ckpt.LAST, _state(2), keep_previous=True)


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_last_checkpoint_falls_back_to_the_previous_one(
    corruption: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _two_checkpoints(tmp_path)
    last = tmp_path / ckpt.LAST
    last.write_bytes(CORRUPTIONS[corruption](last.read_bytes()))
    with caplog.at_level(logging.WARNING, logger=ckpt.__name__):
        state = ckpt.load_resume_state(tmp_path)
    assert state["epoch"] == 1
    torch.testing.assert_close(state["model"]["weight"], _state(1)["model"]["weight"])
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(last) in warning and f"falling back to {tmp_path / ckpt.PREVIOUS}" in warning


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_two_bad_checkpoints_are_refused_naming_both(corruption: str, tmp_path: Path) -> None:
    _two_checkpoints(tmp_path)
    for name in (ckpt.LAST, ckpt.PREVIOUS):
        path = tmp_path / name
        path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.load_resume_state(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / ckpt.LAST) in message and str(tmp_path / ckpt.PREVIOUS) in message, message
    assert "without --resume" in message


def _save_forever(run_dir: Path, first_epoch: int) -> None:
    """The child: the trainer's checkpoint write, epoch after epoch, until it is killed."""
    epoch = first_epoch
    while True:
        ckpt.save_checkpoint(run_dir / ckpt.LAST, _state(epoch, size=256), keep_previous=True)
        epoch += 1


def test_sigkill_at_random_points_always_leaves_a_checkpoint_that_loads(tmp_path: Path) -> None:
    rng = random.Random(16)
    saved_epoch = 0
    advanced = 0
    for point in range(KILL_POINTS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                _save_forever(tmp_path, saved_epoch + 1)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.01, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if not (tmp_path / ckpt.LAST).exists():
            continue  # killed before the first save finished: nothing to resume, nothing torn
        state = ckpt.load_resume_state(tmp_path)  # never raises: one of the two always loads
        assert state["epoch"] >= saved_epoch, f"kill point {point}: epoch {state['epoch']} < {saved_epoch}"
        torch.testing.assert_close(
            state["model"]["weight"], _state(state["epoch"], size=256)["model"]["weight"]
        )
        advanced += state["epoch"] > saved_epoch
        saved_epoch = state["epoch"]
    assert advanced >= KILL_POINTS // 2, f"the writer made progress at only {advanced} kill points"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in (ckpt.LAST, ckpt.PREVIOUS)]
    assert all(name.endswith(".tmp") for name in leftovers), leftovers
