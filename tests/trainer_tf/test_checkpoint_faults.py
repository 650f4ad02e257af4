"""Checkpoint faults of trainer-tf: a corrupt newest checkpoint (truncated, zero bytes, wrong content)
falls back to the previous one with a warning, two bad ones are refused naming both, and a writer
SIGKILLed at 20 seeded random points always leaves a checkpoint that loads, never an older one."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from checkpoint_kill import callback, tiny_model
from conftest import trainer_env

from imgbench.errors import ImgbenchError

KILL_POINTS = 20
HERE = Path(__file__).resolve().parent
CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[: len(data) // 2],
    "zero bytes": lambda data: b"",
    "wrong content": lambda data: b'{"weights": "not HDF5"}\n' * 8,
}


def _two_checkpoints(backup_dir: Path) -> tuple[list[np.ndarray], dict]:
    """Epochs 1 and 2 backed up; the weights of epoch 1 and the state file."""
    first = tiny_model(1)
    backup = callback(backup_dir, first)
    backup._current_epoch = 1
    backup._save_model()
    weights_1 = first.get_weights()
    backup.set_model(tiny_model(2))
    backup._current_epoch = 2
    backup._save_model()
    return weights_1, json.loads((backup_dir / "state.json").read_text())


def _resume(backup_dir: Path):
    model = tiny_model(0)
    callback(backup_dir, model)._load_model()
    return model


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(
    corruption: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights_1, state = _two_checkpoints(tmp_path)
    newest = tmp_path / state["weights"]
    newest.write_bytes(CORRUPTIONS[corruption](newest.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="trainer_tf.checkpoint"):
        model = _resume(tmp_path)
    assert model._initial_epoch == 1
    for loaded, saved in zip(model.get_weights(), weights_1, strict=True):
        np.testing.assert_array_equal(loaded, saved)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(newest) in warning and "trying the previous one" in warning


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_two_bad_checkpoints_are_refused_naming_both(corruption: str, tmp_path: Path) -> None:
    _, state = _two_checkpoints(tmp_path)
    names = [state["weights"], state["previous"]["weights"]]
    for name in names:
        path = tmp_path / name
        path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    with pytest.raises(ImgbenchError) as caught:
        _resume(tmp_path)
    message = str(caught.value)
    assert all(name in message for name in names) and "without --resume" in message, message


def test_sigkill_at_random_points_always_leaves_a_checkpoint_that_loads(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "checkpoint_kill.py"), str(tmp_path), str(KILL_POINTS), "16"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**trainer_env(), "PYTHONPATH": f"{HERE}:{trainer_env().get('PYTHONPATH', '')}"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == KILL_POINTS, done.stdout
    errors = [a for a in answers if "error" in a]
    assert not errors, errors
    epochs = [a["epoch"] for a in answers]
    assert epochs == sorted(epochs), f"a resume went back: {epochs}"
    assert sum(b > a for a, b in zip([0, *epochs], epochs, strict=False)) >= KILL_POINTS // 2, epochs
    weights = {p.name for p in tmp_path.glob("epoch-*.weights.h5")}
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["weights"] in weights and state["previous"]["weights"] in weights, (state, weights)
