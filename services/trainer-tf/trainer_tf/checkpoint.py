"""What a run folder holds and how it survives crashes.

    RUN/config.json              the resolved configuration (written once, read on --resume and by export)
    RUN/backup/state.json        {"epoch": n, "weights": ..., "previous": ...}: the resume point
    RUN/backup/epoch-NNNN.weights.h5   model + optimizer state after epoch n (and the one before)
    RUN/best.weights.h5, best.json     the best validation top-1 so far (what export ships)
    RUN/metrics.jsonl, metrics.csv     one row per finished epoch (imgbench.training_log)

``AtomicBackupAndRestore`` is Keras's ``BackupAndRestore`` with crash-safe writes: stock Keras writes
the weights file in place and the epoch counter after it, so a SIGKILL in between leaves new weights
labelled with the old epoch (or a torn HDF5 file). Here the weights go to a new file that is renamed
into place, then the state file is replaced atomically and names it; the previous checkpoint is kept
and used if the newest one does not load.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import keras

from imgbench.atomic import atomic_write_text
from imgbench.errors import ImgbenchError

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
BACKUP_DIR = "backup"
STATE_NAME = "state.json"
BEST_WEIGHTS = "best.weights.h5"
BEST_STATE = "best.json"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImgbenchError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ImgbenchError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise ImgbenchError(f"{run_dir} holds no training run ({CONFIG_NAME} is missing)")
    return read_json(path)


def resume_epoch(run_dir: Path) -> int:
    """Epochs finished according to the backup (0 when there is none)."""
    state_path = Path(run_dir) / BACKUP_DIR / STATE_NAME
    return int(read_json(state_path)["epoch"]) if state_path.is_file() else 0


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """``model.save_weights`` to a temporary ``*.weights.h5`` beside ``path``, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save_weights(tmp, overwrite=True)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore(save_freq="epoch")`` whose checkpoint is never half-written (see module doc)."""

    def __init__(self, backup_dir: Path) -> None:
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=False)
        self.backup_path = Path(backup_dir)
        self.state_path = self.backup_path / STATE_NAME

    def _save_model(self) -> None:
        self.backup_path.mkdir(parents=True, exist_ok=True)
        epoch = self._current_epoch
        weights = self.backup_path / f"epoch-{epoch:04d}.weights.h5"
        save_weights_atomically(self.model, weights)
        previous = None
        if self.state_path.is_file():
            old = read_json(self.state_path)
            previous = {"epoch": old["epoch"], "weights": old["weights"]}
        write_json(self.state_path, {"epoch": epoch, "weights": weights.name, "previous": previous})
        keep = {weights.name, previous["weights"] if previous else None}
        for stale in self.backup_path.glob("epoch-*.weights.h5"):
            if stale.name not in keep:
                stale.unlink(missing_ok=True)

    def _load_model(self) -> None:
        if not self.state_path.is_file():
            return
        state = read_json(self.state_path)
        candidates = [state] + ([state["previous"]] if state.get("previous") else [])
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        failures = []
        for candidate in candidates:
            path = self.backup_path / candidate["weights"]
            try:
                self.model.load_weights(path)
            except (OSError, ValueError) as exc:
                log.warning("checkpoint %s does not load (%s); trying the previous one", path, exc)
                failures.append(f"{path.name}: {type(exc).__name__}: {exc}")
                continue
            self.model._initial_epoch = int(candidate["epoch"])  # how fit() learns where to start
            log.info("resumed from %s: %d epoch(s) done", path, candidate["epoch"])
            return
        raise ImgbenchError(
            f"no checkpoint in {self.backup_path} loads ({'; '.join(failures)}); "
            "start a new run without --resume"
        )

    def on_train_begin(self, logs=None) -> None:
        self._load_model()  # the parent's fallback copies files in place; ours reads state.json
