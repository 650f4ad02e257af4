"""``python checkpoint_kill.py BACKUP_DIR POINTS SEED``: SIGKILL trainer-tf's checkpoint write at seeded
random points, and after each kill load what is left as a resume does. Prints one JSON line per point.

This process imports Keras but runs no TensorFlow op itself, so each writer and each loader is a clean
fork of it (no TensorFlow import per point: 20 points take seconds, not minutes). Used by
test_checkpoint_faults.py.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path

import keras
from trainer_tf.checkpoint import AtomicBackupAndRestore

logging.basicConfig(level=logging.ERROR)


def tiny_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)  # as after a training step: its state is saved too
    return model


def callback(backup_dir: Path, model: keras.Model) -> AtomicBackupAndRestore:
    backup = AtomicBackupAndRestore(backup_dir)
    backup.set_model(model)
    return backup


def write_forever(backup_dir: Path, first_epoch: int, ready: int) -> None:
    """The child: the trainer's checkpoint write after every epoch, epoch after epoch."""
    model = tiny_model(first_epoch)
    backup = callback(backup_dir, model)
    os.write(ready, b"1")
    epoch = first_epoch
    while True:
        backup._current_epoch = epoch  # what on_epoch_begin sets
        backup._save_model()
        epoch += 1


def load(backup_dir: Path, result: int) -> None:
    """The child: what --resume does, reporting the epoch it resumed at (or the error)."""
    model = tiny_model(0)
    try:
        callback(backup_dir, model)._load_model()
        answer = {"epoch": int(getattr(model, "_initial_epoch", 0) or 0)}
    except Exception as exc:  # reported to the test, which fails on it
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    os.write(result, json.dumps(answer).encode())


def in_child(target, *args) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            target(*args)
        finally:
            os._exit(0)
    return pid


def main(backup_dir: Path, points: int, seed: int) -> None:
    rng = random.Random(seed)
    epoch = 0
    for point in range(points):
        ready_read, ready_write = os.pipe()
        writer = in_child(write_forever, backup_dir, epoch + 1, ready_write)
        os.close(ready_write)
        os.read(ready_read, 1)  # the model is built: from here on the child only writes checkpoints
        os.close(ready_read)
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(writer, signal.SIGKILL)
        os.waitpid(writer, 0)
        result_read, result_write = os.pipe()
        loader = in_child(load, backup_dir, result_write)
        os.close(result_write)
        answer = json.loads(os.read(result_read, 65536) or b'{"error": "the loader died"}')
        os.close(result_read)
        os.waitpid(loader, 0)
        answer["point"] = point
        print(json.dumps(answer), flush=True)
        epoch = answer.get("epoch", epoch)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
