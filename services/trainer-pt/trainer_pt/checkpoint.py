"""Crash-safe checkpoints: one dict with named keys, written to a temp file and renamed into place.

Before ``checkpoint_last.pt`` is replaced, the previous one is kept as ``checkpoint_last.prev.pt``; a
corrupt or truncated last checkpoint falls back to it (the Keras BackupAndRestore habit).

    >>> save_checkpoint(run_dir / LAST, state)          # doctest: +SKIP
    >>> state = load_resume_state(run_dir)              # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgbench.atomic import atomic_write_bytes
from imgbench.errors import ImgbenchError

log = logging.getLogger(__name__)

LAST = "checkpoint_last.pt"
PREVIOUS = "checkpoint_last.prev.pt"
BEST = "checkpoint_best.pt"


class CheckpointError(ImgbenchError):
    """A checkpoint is missing, unreadable or does not fit the run being resumed."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any], keep_previous: bool = False) -> None:
    """Serialize in memory, then write atomically; with ``keep_previous`` the old file becomes the backup."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = Path(path)
    if keep_previous and path.exists():
        # A hard link keeps the old checkpoint readable under the backup name while the new one is written.
        backup = path.with_name(PREVIOUS)
        backup.unlink(missing_ok=True)
        os.link(path, backup)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        # weights_only=False: the checkpoint carries RNG states and args, written by this trainer only.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated zip raises RuntimeError, a foreign file UnpicklingError
        raise CheckpointError(f"checkpoint {path} is unreadable: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise CheckpointError(f"{path} is not a trainer-pt checkpoint (no 'model'/'epoch' keys)")
    return state


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The file a resume starts from: the last checkpoint, else its backup; None when neither exists."""
    for name in (LAST, PREVIOUS):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def load_resume_state(run_dir: Path) -> dict[str, Any]:
    """The last checkpoint of ``run_dir``, or its backup when the last one is corrupt."""
    last, previous = run_dir / LAST, run_dir / PREVIOUS
    if not last.exists() and not previous.exists():
        raise CheckpointError(f"--resume: no checkpoint in {run_dir} ({LAST} is missing)")
    try:
        return load_checkpoint(last)
    except CheckpointError as exc:
        if not previous.exists():
            raise
        log.warning("%s; falling back to %s", exc, previous)
        try:
            return load_checkpoint(previous)
        except CheckpointError as previous_exc:
            raise CheckpointError(
                f"--resume: no checkpoint of {run_dir} loads ({exc}; {previous_exc}); "
                "start a new run without --resume or in another --output-dir"
            ) from None
